"""Checkpoint names and views: what faces show and ``--json`` prints.

A checkpoint is a PVE snapshot; PVE's snapshot list is the truth about which exist and how they hang
together (each names its ``parent``; the VM's own config names the checkpoint it was last taken from or
restored to, which is where "you are here" hangs). autovibe adds marks: pinned, who took it, and which
machines were branched from it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from autovibe.checkpoints.errors import InvalidCheckpointRequest

MAX_NAME: Final = 40  # PVE's snapname maxLength
# PVE's `pve-configid` format, which snapshot names must match.
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_-]+", re.IGNORECASE)
RESERVED: Final = frozenset({"current", "pending"})  # PVE refuses these (case-insensitively)
CURRENT: Final = "current"


def check_name(name: str) -> str:
    """``name`` if PVE would accept it as a snapshot name, else a one-line ``InvalidCheckpointRequest``."""
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise InvalidCheckpointRequest(
            f"invalid checkpoint name '{name}': use 2 to {MAX_NAME} letters, digits, '-' or '_', "
            "starting with a letter",
            hint="for example: before-upgrade",
        )
    if name.lower() in RESERVED:
        raise InvalidCheckpointRequest(
            f"invalid checkpoint name '{name}': '{name.lower()}' is reserved by PVE",
            hint="choose another name",
        )
    return name


def generated_name(now: datetime, taken: Collection[str], *, prefix: str = "ckpt") -> str:
    """``ckpt-20261121-093000`` from ``now`` in UTC; ``-2``, ``-3``... when that second is taken."""
    base = f"{prefix}-{now.astimezone(UTC):%Y%m%d-%H%M%S}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class Checkpoint(BaseModel):
    """One checkpoint. ``time`` is PVE's snaptime (UTC); ``ram`` says whether RAM state was saved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    time: AwareDatetime | None
    ram: bool
    description: str = ""
    parent: str | None = None
    pinned: bool = False
    branches: tuple[str, ...] = ()  # machines branched from this checkpoint (lineage)
    created_by: str | None = None

    @property
    def branch_point(self) -> bool:
        return bool(self.branches)


class CheckpointTree(BaseModel):
    """A machine's checkpoints (oldest first) and where its current state hangs (``here``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    vmid: int
    node: str
    status: str
    here: str | None  # the checkpoint the current state descends from; None: before any checkpoint
    checkpoints: tuple[Checkpoint, ...] = ()

    def get(self, name: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)

    def children(self, parent: str | None) -> list[Checkpoint]:
        """Checkpoints whose parent is ``parent`` (None: the roots), oldest first. A parent PVE no
        longer lists (deleted outside autovibe mid-read) makes its children roots."""
        names = {c.name for c in self.checkpoints}
        return [
            c
            for c in self.checkpoints
            if (c.parent if c.parent in names else None) == parent and c.name != parent
        ]

    def newer_than(self, name: str) -> list[Checkpoint]:
        """Checkpoints taken after ``name`` (any branch of the tree), newest first."""
        target = self.get(name)
        if target is None or target.time is None:
            return []
        after = target.time
        later = [(c.time, c) for c in self.checkpoints if c.time is not None and c.time > after]
        return [c for _, c in sorted(later, key=lambda pair: pair[0], reverse=True)]

    def nested(self) -> list[dict[str, Any]]:
        """The tree as nested data: each checkpoint with its ``children``; ``current`` (you are here)
        appears as a child of ``here`` (or as a root)."""

        def node(parent: str | None) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = [
                {**c.model_dump(mode="json"), "children": node(c.name)} for c in self.children(parent)
            ]
            if parent == self.here:
                out.append({"name": CURRENT, "current": True, "status": self.status, "children": []})
            return out

        return node(None)


class ConfigChange(BaseModel):
    """A config key that differs between a checkpoint and the machine now (None: absent there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    checkpoint: str | None
    current: str | None


class CheckpointDetail(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    checkpoint: Checkpoint
    config: dict[str, str] = Field(default_factory=dict)
    changes: tuple[ConfigChange, ...] = ()


# Keys that say nothing about the machine's state, or always differ between a snapshot and now.
_NOT_COMPARED: Final = frozenset(
    {"digest", "snaptime", "vmstate", "runningmachine", "runningcpu", "parent", "lock", "description"}
)


def config_changes(snapshot: dict[str, Any], current: dict[str, Any]) -> tuple[ConfigChange, ...]:
    """What differs between a snapshot's config and the current one, by key (``unusedN`` ignored)."""
    keys = sorted(k for k in {*snapshot, *current} if k not in _NOT_COMPARED and not k.startswith("unused"))
    changes = []
    for key in keys:
        before = None if key not in snapshot else str(snapshot[key])
        now = None if key not in current else str(current[key])
        if before != now:
            changes.append(ConfigChange(key=key, checkpoint=before, current=now))
    return tuple(changes)


def comparable(config: dict[str, Any]) -> dict[str, str]:
    """A snapshot config as shown to users: strings, without PVE's bookkeeping keys."""
    return {k: str(v) for k, v in sorted(config.items()) if k not in ("digest", "snaptime")}


def oldest_first(checkpoints: Iterable[Checkpoint]) -> tuple[Checkpoint, ...]:
    epoch = datetime.min.replace(tzinfo=UTC)
    return tuple(sorted(checkpoints, key=lambda c: (c.time or epoch, c.name)))
