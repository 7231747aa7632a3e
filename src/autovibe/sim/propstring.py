"""Property strings: PVE's ``key=value,key2=value2`` values such as ``net0`` or ``scsi0``.

``parse_property_string`` splits a value the way pve-common ``parse_property_string`` does, before
the sub-keys are checked against their schema:

- a part without ``=`` is the value of the sub-key marked ``default_key``
  (``"local-lvm:32,size=32G"`` -> ``file=local-lvm:32``);
- an alias sub-key stores its value under the aliased key, and with ``keyAlias`` also records its own
  name there (``"virtio=BC:24:11:00:00:01"`` -> ``model=virtio, macaddr=BC:24:11:00:00:01``);
- boolean sub-keys accept 1/0, on/off, yes/no, true/false and are normalised to ``1``/``0``.

Structural problems raise ``PropertyStringError`` carrying PVE's die text (newline-terminated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from autovibe.sim.schema import Param

_TRUE = frozenset({"1", "on", "yes", "true"})
_FALSE = frozenset({"0", "off", "no", "false"})
_KEY_VALUE = re.compile(r"^([^=]+)=(.+)$", re.DOTALL)


class PropertyStringError(ValueError):
    """The value is not a well-formed property string; ``str(error)`` is PVE's text."""


def parse_boolean(text: str) -> int | None:
    """PVE's ``parse_boolean``: 1 or 0 for the accepted words (case-insensitive), else None."""
    lowered = text.lower()
    if lowered in _TRUE:
        return 1
    if lowered in _FALSE:
        return 0
    return None


def parse_property_string(fmt: Mapping[str, Param], text: str) -> dict[str, str]:
    """Split ``text`` into sub-key values (strings; booleans as ``"1"``/``"0"`` when recognised).

    Raises ``PropertyStringError`` for an unknown key, a duplicate key, a keyless value when the
    format has no default key, or a part like ``=x``.
    """
    result: dict[str, str] = {}
    default_key_used: str | None = None
    for part in text.split(","):
        if not part.strip():
            continue
        pair = _KEY_VALUE.match(part)
        if pair is not None:
            _store_pair(fmt, result, pair.group(1), pair.group(2))
        elif "=" not in part:
            default_key_used = _store_default(fmt, result, part, default_key_used)
        else:
            raise PropertyStringError("missing key in comma-separated list property\n")
    return result


def _store_pair(fmt: Mapping[str, Param], result: dict[str, str], key: str, value: str) -> None:
    if key in result:
        raise PropertyStringError(f"duplicate key in comma-separated list property: {key}\n")
    schema = fmt.get(key)
    if schema is not None and schema.alias:
        if schema.key_alias:
            if schema.key_alias in result:
                raise PropertyStringError(f"key alias '{schema.key_alias}' is already defined\n")
            result[schema.key_alias] = key
        key = schema.alias
        schema = fmt.get(key)
    if schema is None:
        raise PropertyStringError(f"invalid key in comma-separated list property: {key}\n")
    if schema.type == "boolean":
        parsed = parse_boolean(value)
        if parsed is not None:
            value = str(parsed)
    result[key] = value


def _store_default(fmt: Mapping[str, Param], result: dict[str, str], part: str, used: str | None) -> str:
    if used is not None:
        raise PropertyStringError(f"duplicate key in comma-separated list property: {used}\n")
    for key, schema in fmt.items():
        if schema.default_key:
            if result.get(key):
                raise PropertyStringError(f"duplicate key in comma-separated list property: {key}\n")
            result[key] = part
            return key
    raise PropertyStringError("value without key, but schema does not define a default key\n")
