"""Typed views of the PVE answers that services read.

PVE's JSON comes from Perl scalars, so any number may arrive as a string (``/cluster/nextid``
answers ``"100"``, SEMANTICS §1) and fields are often simply absent (an offline node has no
``cpu``). The models therefore coerce number-like strings, default absent counters to zero and
ignore fields they do not know, so a newer PVE does not break an older autovibe.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from autovibe.pve.errors import PveProtocolError

__all__ = [
    "ClusterResource",
    "NodeInfo",
    "PveFloat",
    "PveInt",
    "PveModel",
    "PveVersion",
    "parse_model",
    "parse_models",
    "parse_tags",
]

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        # "1.0" and "12e3" turn up from Perl arithmetic; int("1.0") would refuse them.
        return int(float(text)) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return 0.0 if text == "" else float(text)
    return value


PveInt = Annotated[int, BeforeValidator(_to_int)]
"""An int that also accepts ``"100"``, ``"1.0"`` and ``""`` (as 0)."""

PveFloat = Annotated[float, BeforeValidator(_to_float)]
"""A float that also accepts ``"0.25"`` and ``""`` (as 0.0)."""


def parse_tags(value: Any) -> tuple[str, ...]:
    """PVE tags arrive as one string separated by ``;`` (``,`` and spaces are accepted too)."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(tag) for tag in value if str(tag))
    text = str(value).replace(",", ";").replace(" ", ";")
    return tuple(tag for tag in text.split(";") if tag)


class PveModel(BaseModel):
    """Base of the PVE answer models: immutable, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class PveVersion(PveModel):
    """``GET /version``: ``version`` is like ``8.4.1``, ``release`` like ``8.4``."""

    version: str
    release: str
    repoid: str = ""


class NodeInfo(PveModel):
    """One entry of ``GET /nodes``. ``status`` is ``online``, ``offline`` or ``unknown``; the
    counters are 0 when PVE omits them (offline nodes). ``cpu`` is a fraction of ``maxcpu``."""

    node: str
    status: str = "unknown"
    cpu: PveFloat = 0.0
    maxcpu: PveInt = 0
    mem: PveInt = 0
    maxmem: PveInt = 0
    uptime: PveInt = 0

    @property
    def online(self) -> bool:
        return self.status == "online"


class ClusterResource(PveModel):
    """One entry of ``GET /cluster/resources``: a guest (``qemu``/``lxc``), ``node``, ``storage``,
    ``pool``, ``sdn``... Sizes are bytes, ``cpu`` is a fraction of ``maxcpu``, ``uptime`` seconds;
    counters PVE omits for a type are 0."""

    id: str
    type: str
    node: str | None = None
    vmid: PveInt | None = None
    name: str | None = None
    status: str | None = None
    cpu: PveFloat = 0.0
    maxcpu: PveFloat = 0.0
    mem: PveInt = 0
    maxmem: PveInt = 0
    disk: PveInt = 0
    maxdisk: PveInt = 0
    netin: PveInt = 0
    netout: PveInt = 0
    diskread: PveInt = 0
    diskwrite: PveInt = 0
    uptime: PveInt = 0
    template: bool = False
    storage: str | None = None
    pool: str | None = None
    tags: Annotated[tuple[str, ...], BeforeValidator(parse_tags)] = Field(default=())

    @property
    def is_guest(self) -> bool:
        return self.type in ("qemu", "lxc")


def parse_model(model: type[_ModelT], data: Any, path: str) -> _ModelT:
    """Validate the ``data`` of ``GET path`` as ``model``; a mismatch is a ``PveProtocolError``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Name the field but leave the input out: answers can hold values we must not echo.
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PveProtocolError(
            f"unexpected answer shape: {where}: {first['msg']}", method="GET", path=path
        ) from None


def parse_models(model: type[_ModelT], data: Any, path: str) -> list[_ModelT]:
    """Validate a list answer item by item, like ``parse_model``."""
    if not isinstance(data, list):
        raise PveProtocolError("expected a list", method="GET", path=path)
    return [parse_model(model, item, path) for item in data]
