"""Profiles: autovibe's recipes for kinds of machines (template, size, network, tags).

Two seeds ship with autovibe (:data:`SEED_PROFILES`): ``claude_code`` and ``hub``. Users change
them or add their own in the config file; :func:`load_profiles` merges those entries field by
field over the seeds::

    [profiles.claude_code]
    memory_mib = "8G"          # only this field changes; the rest stays as seeded

    [profiles.ci_runner]       # a new profile names every required field
    template_vmid = 9010
    cores = 4
    memory_mib = 8192
    disk_gib = 40
    network_profile = "api_access"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from difflib import get_close_matches
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from autovibe.machines.errors import ProfileInvalid, ProfileNotFound, validation_message
from autovibe.machines.models import Cores, DiskGiB, MemoryMiB, Slug

__all__ = ["SEED_PROFILES", "Profile", "get_profile", "load_profiles"]

# pve-common JSONSchema.pm: `pve-tag` ([a-z0-9_][a-z0-9_\-+.]*, case-insensitive) and
# `pve-storage-id` ([a-z][a-z0-9\-_.]*[a-z0-9], case-insensitive).
_TAG_RE = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*", re.IGNORECASE)
_STORAGE_RE = re.compile(r"[a-z][a-z0-9\-_.]*[a-z0-9]", re.IGNORECASE)


def _check_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    for tag in tags:
        if not _TAG_RE.fullmatch(tag):
            raise ValueError(f"{tag!r} is not a valid PVE tag (letters, digits, '_', '-', '+', '.')")
    return tags


def _check_storage(storage: str | None) -> str | None:
    if storage is not None and not _STORAGE_RE.fullmatch(storage):
        raise ValueError(f"{storage!r} is not a valid PVE storage id (e.g. 'local-lvm')")
    return storage


class Profile(BaseModel):
    """A kind of machine. Sizes in PVE's units (memory MiB, disk GiB); ``storage`` ``None`` means
    "the template's storage"; ``full_clone`` ``False`` makes linked clones (fast, tied to the template).
    ``checkpoint_before_expiry`` asks for a checkpoint before a machine's ttl runs out, and
    ``checkpoint_before_idle_stop`` for one before an idle machine is stopped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: Slug
    template_vmid: int = Field(ge=100, le=999_999_999)
    cores: Cores
    memory_mib: MemoryMiB
    disk_gib: DiskGiB
    network_profile: Slug
    tags: Annotated[tuple[str, ...], AfterValidator(_check_tags)] = ()
    checkpoint_before_expiry: bool = False
    checkpoint_before_idle_stop: bool = False
    full_clone: bool = True
    storage: Annotated[str | None, AfterValidator(_check_storage)] = None
    description: str = Field(default="", max_length=1024)


SEED_PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "claude_code": Profile(
            name="claude_code",
            template_vmid=9000,
            cores=2,
            memory_mib=4096,
            disk_gib=20,
            network_profile="api_access",
            description="A machine for a Claude Code agent.",
        ),
        "hub": Profile(
            name="hub",
            template_vmid=9001,
            cores=4,
            memory_mib=8192,
            disk_gib=50,
            network_profile="management_access",
            description="The autovibe hub, which runs the control plane.",
        ),
    }
)
"""The profiles autovibe ships with, before any user overrides."""


def load_profiles(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Profile]:
    """The seeds with ``overrides`` (the ``profiles`` setting) applied, by name.

    An entry named like a seed changes only the fields it gives; any other entry is a new profile
    and must give every field without a default. Raises :class:`ProfileInvalid` naming the profile
    and the field (``"profile 'hub': cores: must be at most 128"``), and suggests the closest field
    name for a typo.
    """
    profiles = dict(SEED_PROFILES)
    for name, fields in overrides.items():
        profiles[name] = _build(name, fields)
    return profiles


def _build(name: str, fields: Mapping[str, Any]) -> Profile:
    where = f"profile {name!r}"
    hint = f"fix [profiles.{name}] in the config file"
    if not isinstance(fields, Mapping):
        raise ProfileInvalid(f"{where}: expected a table of fields, not {type(fields).__name__}", hint=hint)
    for key in fields:
        if key not in Profile.model_fields:
            close = get_close_matches(str(key), list(Profile.model_fields), n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            raise ProfileInvalid(f"{where}: {key!r} is not a profile field{suggestion}", hint=hint)
    if fields.get("name", name) != name:
        raise ProfileInvalid(f"{where}: name {fields['name']!r} differs from the table's name", hint=hint)
    seed = SEED_PROFILES.get(name)
    base: dict[str, Any] = seed.model_dump() if seed is not None else {}
    try:
        return Profile.model_validate({**base, **fields, "name": name})
    except ValidationError as exc:
        raise ProfileInvalid(f"{where}: {validation_message(exc)}", hint=hint) from None


def get_profile(profiles: Mapping[str, Profile], name: str) -> Profile:
    """The profile called ``name``; :class:`ProfileNotFound` (also a ``KeyError``) lists the known ones."""
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or "none"
        close = get_close_matches(name, list(profiles), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise ProfileNotFound(
            f"no profile named {name!r}",
            hint=f"{guess}known profiles: {known}; define more under [profiles] in the config file",
        ) from None
