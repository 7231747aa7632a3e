"""How values travel to and from PVE: parameter encoding, the JSON envelope, node routing."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autovibe.pve.errors import PveProtocolError

__all__ = [
    "Envelope",
    "FormValue",
    "encode_params",
    "node_of_path",
    "unwrap_envelope",
]

FormValue = str | list[str]

_NODE_PATH = re.compile(r"^/nodes/([^/?#]+)(?:/|$)")


def _encode_scalar(value: Any) -> str:
    # SEMANTICS §1: form booleans must be the strings 1/0; "true" fails type checking.
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_params(params: Mapping[str, Any]) -> dict[str, FormValue]:
    """Turn keyword arguments into PVE form/query values.

    ``None`` means "not given" and is dropped; booleans become ``1``/``0``; lists and tuples
    repeat the key; everything else is ``str()``-ed.
    """
    encoded: dict[str, FormValue] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            encoded[key] = [_encode_scalar(item) for item in value if item is not None]
        else:
            encoded[key] = _encode_scalar(value)
    return encoded


def node_of_path(path: str) -> str | None:
    """The node a request addresses (``/nodes/pve1/qemu`` gives ``pve1``), or None."""
    found = _NODE_PATH.match(path)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Envelope:
    """PVE's success body: ``data``, plus ``total`` for paged lists such as task logs."""

    data: Any
    total: int | None = None


def unwrap_envelope(body: bytes, *, method: str, path: str) -> Envelope:
    """Read ``{"data": ..., "total"?: N}``; anything else raises ``PveProtocolError``."""
    try:
        decoded = json.loads(body)
    except ValueError:
        raise PveProtocolError("answer is not JSON", method=method, path=path) from None
    if not isinstance(decoded, dict) or "data" not in decoded:
        raise PveProtocolError("answer lacks PVE's 'data' envelope", method=method, path=path)
    total = decoded.get("total")
    try:
        total_count = None if total is None else int(total)
    except (TypeError, ValueError):
        raise PveProtocolError(
            f"envelope 'total' is not a number: {total!r}", method=method, path=path
        ) from None
    return Envelope(data=decoded["data"], total=total_count)
