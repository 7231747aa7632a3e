"""What the cluster services return: views of the cluster, doctor findings, guests and snapshots.

Frozen pydantic models, so faces can render them or dump them as JSON (``model_dump(mode="json")``)
without knowing PVE's wire format. Sizes are bytes, CPU load a fraction of the CPUs, times UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from autovibe.errors import AutovibeNotFound


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeView(View):
    """One cluster node; ``status`` is ``online``, ``offline`` or ``unknown``."""

    name: str
    status: str
    cpu: float = Field(description="load as a fraction of maxcpu")
    maxcpu: int
    mem: int
    maxmem: int
    uptime: int


class GuestView(View):
    """One VM or container; ``template`` marks PVE templates (clone sources)."""

    vmid: int
    name: str
    node: str
    type: Literal["qemu", "lxc"]
    status: str
    template: bool
    maxcpu: int
    maxmem: int
    maxdisk: int
    lock: str | None = None
    tags: tuple[str, ...] = ()


class StorageView(View):
    """One storage as seen from one node (PVE lists a shared storage once per node)."""

    storage: str
    node: str
    status: str
    plugin: str = Field(description="storage type: dir, lvmthin, zfspool, nfs, rbd...")
    disk: int
    maxdisk: int
    content: tuple[str, ...] = ()


class ClusterStatus(View):
    """Version and inventory from one ``/cluster/resources`` read, sorted by name / vmid."""

    version: str
    release: str
    nodes: tuple[NodeView, ...]
    guests: tuple[GuestView, ...]
    storages: tuple[StorageView, ...]

    @property
    def templates(self) -> tuple[GuestView, ...]:
        return tuple(guest for guest in self.guests if guest.template)


CheckStatus = Literal["ok", "fail", "skip"]


class Check(View):
    """One doctor finding. ``skip`` means an earlier failure made the check impossible."""

    name: str
    status: CheckStatus
    detail: str
    hint: str | None = None


class DoctorReport(View):
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (skips only follow failures, so they never stand alone)."""
        return all(check.status != "fail" for check in self.checks)


@dataclass(frozen=True)
class RequiredPrivilege:
    """A PVE privilege autovibe needs, the ACL path to grant it on, and what it is used for.

    ``propagate``: the grant must reach the objects below ``path`` (``/vms`` -> every ``/vms/<vmid>``);
    False for a path checked on itself only (``/``)."""

    name: str
    path: str
    used_for: str
    propagate: bool = True


class GuestRef(View):
    """Where a guest lives: PVE addresses a guest by node and vmid."""

    node: str
    vmid: int


class SnapshotView(View):
    """One snapshot. ``name == "current"`` is PVE's "You are here!" entry, not a real snapshot."""

    name: str
    parent: str | None = None
    description: str = ""
    snaptime: datetime | None = None
    vmstate: bool = False

    @property
    def is_current(self) -> bool:
        return self.name == "current"


class SnapshotNode(View):
    """A snapshot and the snapshots taken after it (its children), for tree display."""

    snapshot: SnapshotView
    children: tuple[SnapshotNode, ...] = ()


class GuestNotFound(AutovibeNotFound, KeyError):
    """No guest (or no template) with that vmid exists in the cluster."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message
