"""Requests and views of machines and projects, validated before anything reaches PVE.

- :class:`MachineCreate` is what a face hands the service: every field checked and normalised
  (``memory_mib="4G"`` becomes 4096, ``ttl="1h30m"`` a ``timedelta``). Build it with
  :func:`parse_request` to get one-line :class:`InvalidMachineRequest` errors instead of pydantic's.
- :func:`resolved_spec` fills the gaps from the profile and returns the frozen :class:`MachineSpec`
  that deploy works from; no default is looked up after that point.
- :class:`MachineRead`, :class:`ProjectCreate`, :class:`ProjectRead` are the other schema variants.

Sizes follow PVE's units on the way in (memory MiB, disk GiB); ``MachineSpec`` also offers bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from autovibe.machines.errors import InvalidMachineRequest
from autovibe.machines.placement import Demand
from autovibe.types import GIB, MIB

if TYPE_CHECKING:
    from autovibe.machines.profiles import Profile

__all__ = [
    "MAX_FLEET",
    "MISSING",
    "PRIORITIES",
    "MachineCreate",
    "MachineRead",
    "MachineSpec",
    "ProjectCreate",
    "ProjectRead",
    "expand_names",
    "is_critical",
    "parse_disk_gib",
    "parse_memory_mib",
    "parse_request",
    "parse_ttl",
    "priority_of",
    "resolved_spec",
]

MIN_MEMORY_MIB: Final = 64
MAX_MEMORY_MIB: Final = 4_194_304  # PVE's qemu `memory` maximum (4 TiB)
MAX_CORES: Final = 128
MAX_FLEET: Final = 500
# Store column width (store/tables.py Machine.name) and a DNS label's limit alike.
MAX_NAME: Final = 63
MAX_TTL: Final = timedelta(days=3650)
MISSING: Final = "missing"
"""``MachineRead.status`` when autovibe tracks a machine that PVE no longer has."""
PRIORITIES: Final = ("low", "normal", "high")
"""Values of the ``priority`` label, least important first; absent means ``normal``."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)

# PVE's `dns-name` format (pve-common JSONSchema.pm): dot-separated labels of letters, digits and
# hyphens that start and end with a letter or digit. ASCII only: str.isalnum() would admit "é".
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_BAD_NAME_CHAR = re.compile(r"[^A-Za-z0-9.-]")
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""What a project (or policy) name may be: the API's routes and the remote CLI check the same."""
_LABEL_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_SIZE_RE = re.compile(
    r"(?P<number>\d+(?:\.\d+)?)\s*(?:(?P<unit>[KMGT])(?:I?B)?|(?P<bytes>B))?", re.IGNORECASE
)
_UNIT = {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
_TTL_RE = re.compile(r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
_TTL_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def check_vm_name(value: str) -> str:
    """Return ``value`` if PVE accepts it as a VM name, else raise ``ValueError`` with one reason."""
    if not value:
        raise ValueError("must not be empty")
    bad = _BAD_NAME_CHAR.search(value)
    if bad:
        raise ValueError(
            f"{value!r} is not a valid VM name: {bad.group()!r} is not allowed (use letters, digits, "
            "hyphens and dots)"
        )
    if len(value) > MAX_NAME:
        raise ValueError(f"{value!r} is {len(value)} characters long; a VM name has at most {MAX_NAME}")
    for label in value.split("."):
        if not label:
            raise ValueError(f"{value!r} is not a valid VM name: it has an empty part between dots")
        if not _LABEL_RE.fullmatch(label):
            part = "it" if label == value else f"its part {label!r}"
            raise ValueError(
                f"{value!r} is not a valid VM name: {part} must start and end with a letter or digit"
            )
    return value


def check_node_name(value: str) -> str:
    """A PVE node name (format ``pve-node``): one DNS label, such as ``pve1``."""
    if len(value) > MAX_NAME or not _LABEL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid node name: use letters, digits and inner hyphens, "
            f"at most {MAX_NAME} characters (e.g. 'pve1')"
        )
    return value


def check_slug(value: str) -> str:
    """A project or profile name: lowercase letters, digits, ``_`` and ``-``, starting alphanumeric."""
    if not SLUG_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1 to 63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _parse_size(value: Any, *, bare_unit: int, unit_name: str) -> float:
    """Bytes from a number in ``bare_unit`` or a string like ``4G``, ``4096M``, ``4 GiB``, ``512B``.

    A float, because ``"1.5G"`` is fine; callers decide which fractions they accept.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a size, not {type(value).__name__}")
    if not isinstance(value, str):
        try:
            size = float(value) * bare_unit
        except OverflowError:  # a JSON integer with hundreds of digits
            raise ValueError(f"{unit_name} value is far too large") from None
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"{value!r} is not a size; give {unit_name} as a number or a size with a unit, "
                "such as '4G', '4096M' or '4 GiB'"
            )
        unit = match["unit"]
        # Suffixes are binary whatever their spelling ("4GB" = 4 GiB), as in PVE's size options.
        scale = _UNIT[unit.upper()] if unit else (1 if match["bytes"] else bare_unit)
        size = float(match["number"]) * scale
    if not size > 0:  # also catches NaN
        raise ValueError(f"{value!r} is not a positive size")
    return size


def _whole(size: float, unit: int, unit_name: str, value: Any) -> int:
    if not (size / unit).is_integer():
        raise ValueError(f"{value!r} is not a whole number of {unit_name}")
    return int(size // unit)


def parse_memory_mib(value: Any) -> int:
    """Memory in MiB from ``4096``, ``"4096"``, ``"4G"``, ``"4096M"`` or ``"4 GiB"``; range 64..4194304.

    Raises ``ValueError`` (one line) for anything else, such as ``"lots"`` or ``"1.5K"``.
    """
    mib = _whole(_parse_size(value, bare_unit=MIB, unit_name="MiB"), MIB, "MiB", value)
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        raise ValueError(f"{mib} MiB is out of range; memory is {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB")
    return mib


def parse_disk_gib(value: Any) -> int:
    """Disk size in GiB from ``20``, ``"20G"``, ``"20 GiB"`` or ``"1T"``; a whole number, at least 1."""
    return _whole(_parse_size(value, bare_unit=GIB, unit_name="GiB"), GIB, "GiB", value)


def parse_ttl(value: Any) -> timedelta:
    """A positive lifetime from a ``timedelta`` or a string of ``w``/``d``/``h``/``m``/``s`` parts,
    largest first: ``"8h"``, ``"30m"``, ``"2d"``, ``"1h30m"``. Bare numbers are refused: is ``8``
    hours or seconds?"""
    if isinstance(value, timedelta):
        ttl = value
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        match = _TTL_RE.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration; use e.g. '8h', '30m', '2d' or '1h30m'")
        parts = {unit: int(amount) for unit, amount in match.groupdict().items() if amount}
        if any(amount > 10**6 for amount in parts.values()):
            raise ValueError(f"{value!r} is longer than {MAX_TTL.days} days")
        ttl = timedelta(**{_TTL_UNITS[unit]: amount for unit, amount in parts.items()})
    else:
        raise ValueError(f"expected a duration such as '8h', not {type(value).__name__}")
    if ttl <= timedelta(0):
        raise ValueError("must be longer than zero; leave ttl out for a machine that does not expire")
    if ttl > MAX_TTL:
        raise ValueError(f"must be at most {MAX_TTL.days} days; leave ttl out for no expiry")
    return ttl


def _label_value(key: str, value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value).strip()
    if key == "critical":
        lowered = text.lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"label 'critical' must be true or false, not {text!r}")
        return "true" if lowered in _TRUE else "false"
    if key == "priority":
        if text.lower() not in PRIORITIES:
            raise ValueError(f"label 'priority' must be one of {', '.join(PRIORITIES)}, not {text!r}")
        return text.lower()
    if len(text) > 256 or not text.isprintable():
        raise ValueError(f"label {key!r} must be printable text of at most 256 characters")
    return text


def check_labels(value: Any) -> dict[str, str]:
    """Labels as ``{key: text}``; ``critical`` becomes ``"true"``/``"false"``, ``priority`` one of
    :data:`PRIORITIES`. Keys are lowercase (``[a-z0-9][a-z0-9_.-]*``, at most 63 characters)."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of label to text, not {type(value).__name__}")
    labels: dict[str, str] = {}
    for key, raw in value.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
            raise ValueError(f"label key {key!r} must be 1 to 63 lowercase letters, digits, '_', '.' or '-'")
        labels[key] = _label_value(key, raw)
    return labels


def _not_bool(value: Any) -> Any:
    # pydantic's lax int would take True as 1 core; a flag in the wrong place should be an error.
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


VmName = Annotated[str, AfterValidator(check_vm_name)]
PveNodeName = Annotated[str, AfterValidator(check_node_name)]
Slug = Annotated[str, AfterValidator(check_slug)]
MemoryMiB = Annotated[int, BeforeValidator(parse_memory_mib)]
DiskGiB = Annotated[int, BeforeValidator(parse_disk_gib)]
Cores = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MAX_CORES)]
Ttl = Annotated[
    timedelta,
    BeforeValidator(parse_ttl),
    # In JSON a lifetime is the same text the CLI takes ("8h", "1h30m"), not an ISO 8601 duration.
    WithJsonSchema(
        {"type": "string", "pattern": r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["8h"]}
    ),
    PlainSerializer(lambda ttl: f"{int(ttl.total_seconds())}s", return_type=str, when_used="json"),
]
Labels = Annotated[dict[str, str], BeforeValidator(check_labels)]


def is_critical(labels: dict[str, str]) -> bool:
    """True when the ``critical`` label says so; quota enforcement stops non-critical machines first."""
    return labels.get("critical") == "true"


def priority_of(labels: dict[str, str]) -> str:
    """The ``priority`` label, ``"normal"`` when absent; compare with ``PRIORITIES.index``."""
    return labels.get("priority", "normal")


def expand_names(base: str, count: int) -> list[str]:
    """Names of a fleet: ``[base]`` for one machine, ``base-1`` .. ``base-N`` for ``count > 1``.

    >>> expand_names("web", 3)
    ['web-1', 'web-2', 'web-3']
    """
    if not 1 <= count <= MAX_FLEET:
        raise InvalidMachineRequest(f"count: must be 1 to {MAX_FLEET}, not {count}")
    if count == 1:
        return [base]
    return [f"{base}-{index}" for index in range(1, count + 1)]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class MachineCreate(_Request):
    """A request for one machine or a fleet (``count > 1``). ``None`` fields take the profile's value.

    ``disk_gib`` is the absolute size, which must not be below the profile's (checked by
    :func:`resolved_spec`, which knows the profile).
    """

    name: VmName
    profile: Slug
    project: Slug
    node: PveNodeName | None = None
    cores: Cores | None = None
    memory_mib: MemoryMiB | None = None
    disk_gib: DiskGiB | None = None
    full_clone: bool | None = None
    start: bool = True
    ttl: Ttl | None = None
    labels: Labels = Field(default_factory=dict)
    count: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MAX_FLEET)] = 1

    @model_validator(mode="after")
    def _fleet_names_fit(self) -> MachineCreate:
        if self.count > 1:
            longest = f"{self.name}-{self.count}"
            try:
                check_vm_name(longest)
            except ValueError as exc:
                raise ValueError(f"name: with count {self.count}, {exc}") from None
        return self

    @property
    def names(self) -> list[str]:
        """The machine names this request creates (see :func:`expand_names`)."""
        return expand_names(self.name, self.count)


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything deploy needs, resolved from a request and its profile. Treat ``labels`` as read-only.

    ``node`` is the requested node or ``None`` (placement chooses); ``storage`` ``None`` means the
    template's storage; ``names`` has one entry per machine of the fleet.
    """

    name: str
    names: tuple[str, ...]
    project: str
    profile: str
    template_vmid: int
    cores: int
    memory_mib: int
    disk_gib: int
    full_clone: bool
    storage: str | None
    network_profile: str
    tags: tuple[str, ...]
    node: str | None
    start: bool
    ttl: timedelta | None
    checkpoint_before_expiry: bool
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB

    @property
    def disk_bytes(self) -> int:
        return self.disk_gib * GIB

    @property
    def demand(self) -> Demand:
        """What each machine needs from a node, for :mod:`autovibe.machines.placement`."""
        return Demand(memory=self.memory_bytes, cores=self.cores)

    @property
    def critical(self) -> bool:
        return is_critical(self.labels)


def resolved_spec(req: MachineCreate, profile: Profile) -> MachineSpec:
    """Merge ``req`` over ``profile``. Raises :class:`InvalidMachineRequest` when the request names
    another profile or asks for a disk smaller than the template's (a clone's disk can grow, not shrink).
    """
    if req.profile != profile.name:
        raise InvalidMachineRequest(f"profile: the request names {req.profile!r}, not {profile.name!r}")
    disk = profile.disk_gib if req.disk_gib is None else req.disk_gib
    if disk < profile.disk_gib:
        raise InvalidMachineRequest(
            f"disk_gib: {disk} GiB is smaller than profile {profile.name}'s {profile.disk_gib} GiB; "
            "a clone's disk can grow but not shrink",
            hint=f"ask for at least {profile.disk_gib} GiB, or leave disk_gib out",
        )
    return MachineSpec(
        name=req.name,
        names=tuple(req.names),
        project=req.project,
        profile=profile.name,
        template_vmid=profile.template_vmid,
        cores=profile.cores if req.cores is None else req.cores,
        memory_mib=profile.memory_mib if req.memory_mib is None else req.memory_mib,
        disk_gib=disk,
        full_clone=profile.full_clone if req.full_clone is None else req.full_clone,
        storage=profile.storage,
        network_profile=profile.network_profile,
        tags=profile.tags,
        node=req.node,
        start=req.start,
        ttl=req.ttl,
        checkpoint_before_expiry=profile.checkpoint_before_expiry,
        labels=dict(req.labels),
    )


class MachineRead(BaseModel):
    """A tracked machine: the store's record joined with PVE's ``status`` (``running``, ``stopped``…,
    or :data:`MISSING` when PVE no longer has the vmid). Times are UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    vmid: int
    node: str
    project: str
    profile: str
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    created_by: str
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    parent_machine: str | None = None
    parent_checkpoint: str | None = None

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    @property
    def critical(self) -> bool:
        return is_critical(self.labels)


class ProjectCreate(_Request):
    """A new project (tenant). ``name`` is lowercase ``[a-z0-9][a-z0-9_-]{0,62}``."""

    name: Slug
    description: str = Field(default="", max_length=1024)
    labels: Labels = Field(default_factory=dict)


class ProjectRead(BaseModel):
    """A project as stored. ``created_at`` is UTC, ``None`` only before the store has saved it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime | None = None


def parse_request(model: type[_ModelT], data: Any) -> _ModelT:
    """Validate ``data`` (a dict from a face) as ``model``; problems become one-line
    :class:`InvalidMachineRequest` errors such as ``"memory_mib: 'lots' is not a size; ..."``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidMachineRequest.from_validation(exc, fields=list(model.model_fields)) from None
