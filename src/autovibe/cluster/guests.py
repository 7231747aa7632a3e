"""Single-guest steps (find, clone, configure, power, snapshots, delete), one PVE call each.

These are the building blocks the demo strings together; the machines and checkpoints services
will replace them with journaled operations. Every call that starts a PVE task waits for it and
raises ``PveTaskFailed`` when it fails. ``progress`` receives each polled ``TaskStatus``;
``task_timeout`` is seconds by the client's clock (``PveTaskTimeout`` after it; the task runs on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from autovibe.cluster.models import GuestNotFound, GuestRef, GuestView, SnapshotNode, SnapshotView
from autovibe.cluster.service import build_status
from autovibe.pve import PveClient, TaskStatus

Progress = Callable[[TaskStatus], None]
DEFAULT_TASK_TIMEOUT = 600.0


def _qemu(ref: GuestRef) -> str:
    return f"/nodes/{ref.node}/qemu/{ref.vmid}"


async def _wait(pve: PveClient, upid: Any, progress: Progress | None, task_timeout: float) -> None:
    await pve.wait_task(str(upid), progress=progress, timeout=task_timeout)


async def find_guest(*, pve: PveClient, vmid: int, template: bool | None = None) -> GuestView:
    """The guest with ``vmid`` anywhere in the cluster; ``template=True`` also requires a template.

    Raises ``GuestNotFound`` (exit code 4).
    """
    rows = await pve.get("/cluster/resources", type="vm")
    status = build_status("", "", rows if isinstance(rows, list) else [])
    for guest in status.guests:
        if guest.vmid == vmid:
            if template is not None and guest.template != template:
                kind = "a template" if template else "a regular guest"
                raise GuestNotFound(f"guest {vmid} is not {kind}")
            return guest
    raise GuestNotFound(f"no guest {vmid} in the cluster", hint="see `autovibe cluster status`")


async def clone_template(
    *,
    pve: PveClient,
    template: GuestView,
    name: str,
    description: str | None = None,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> GuestRef:
    """Full-clone ``template`` into the next free vmid on the template's node; return the new guest.

    A full clone (not PVE's linked default for templates) so the machine outlives its template.
    ``/cluster/nextid`` does not reserve the id: a concurrent client may take it first, and the
    clone then fails with "config file already exists" rather than touching the other guest.
    """
    newid = await pve.next_vmid()
    source = GuestRef(node=template.node, vmid=template.vmid)
    upid = await pve.post(
        f"{_qemu(source)}/clone", newid=newid, name=name, full=True, description=description
    )
    await _wait(pve, upid, progress, task_timeout)
    return GuestRef(node=template.node, vmid=newid)


async def configure(*, pve: PveClient, guest: GuestRef, cores: int, memory_mib: int) -> None:
    """Set cores and memory (MiB). ``PUT config`` is synchronous in PVE: no task to wait for."""
    await pve.put(f"{_qemu(guest)}/config", cores=cores, memory=memory_mib)


async def guest_power_state(*, pve: PveClient, guest: GuestRef) -> str:
    """``running``, ``stopped`` (or ``paused``…) from ``status/current``."""
    current = await pve.get(f"{_qemu(guest)}/status/current")
    return str(current.get("qmpstatus") or current.get("status") or "unknown")


async def start(
    *,
    pve: PveClient,
    guest: GuestRef,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> None:
    """Start the VM and wait until PVE reports the start task done."""
    await _wait(pve, await pve.post(f"{_qemu(guest)}/status/start"), progress, task_timeout)


async def stop(
    *,
    pve: PveClient,
    guest: GuestRef,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> None:
    """Hard-stop the VM (PVE's ``stop``; it succeeds on a stopped VM too)."""
    await _wait(pve, await pve.post(f"{_qemu(guest)}/status/stop"), progress, task_timeout)


async def delete(
    *,
    pve: PveClient,
    guest: GuestRef,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> None:
    """Destroy a stopped VM with its disks, purging it from jobs and HA."""
    await _wait(pve, await pve.delete(_qemu(guest), purge=True), progress, task_timeout)


async def snapshot(
    *,
    pve: PveClient,
    guest: GuestRef,
    name: str,
    description: str = "",
    vmstate: bool = False,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> None:
    """Take snapshot ``name``; ``vmstate`` also saves RAM (PVE keeps it only if the VM runs)."""
    upid = await pve.post(
        f"{_qemu(guest)}/snapshot", snapname=name, description=description or None, vmstate=vmstate
    )
    await _wait(pve, upid, progress, task_timeout)


async def rollback(
    *,
    pve: PveClient,
    guest: GuestRef,
    name: str,
    progress: Progress | None = None,
    task_timeout: float = DEFAULT_TASK_TIMEOUT,
) -> None:
    """Roll back to snapshot ``name``; with saved RAM the VM resumes where it was."""
    await _wait(pve, await pve.post(f"{_qemu(guest)}/snapshot/{name}/rollback"), progress, task_timeout)


async def list_snapshots(*, pve: PveClient, guest: GuestRef) -> list[SnapshotView]:
    """Every snapshot plus PVE's ``current`` entry, oldest first (``current`` last)."""
    rows = await pve.get(f"{_qemu(guest)}/snapshot")
    snapshots = [_snapshot_view(row) for row in rows]
    return sorted(
        snapshots, key=lambda s: (s.is_current, s.snaptime or datetime.max.replace(tzinfo=UTC), s.name)
    )


def _snapshot_view(row: dict[str, Any]) -> SnapshotView:
    snaptime = row.get("snaptime")
    return SnapshotView(
        name=str(row["name"]),
        parent=str(row["parent"]) if row.get("parent") else None,
        description=str(row.get("description") or "").strip(),
        snaptime=datetime.fromtimestamp(int(snaptime), UTC) if snaptime is not None else None,
        vmstate=bool(int(row.get("vmstate") or 0)),
    )


def snapshot_tree(snapshots: Iterable[SnapshotView]) -> list[SnapshotNode]:
    """Arrange snapshots by ``parent`` into trees (pure). A parent that is missing makes a root.

    PVE's list is unordered; children keep the input order, so pass :func:`list_snapshots` output
    to get oldest-first siblings with ``current`` last.
    """
    items = list(snapshots)
    names = {item.name for item in items}
    children: dict[str | None, list[SnapshotView]] = {}
    for item in items:
        parent = item.parent if item.parent in names and item.parent != item.name else None
        children.setdefault(parent, []).append(item)

    placed: set[str] = set()

    def grow(item: SnapshotView) -> SnapshotNode:
        placed.add(item.name)
        kids = [kid for kid in children.get(item.name, []) if kid.name not in placed]
        return SnapshotNode(snapshot=item, children=tuple(grow(kid) for kid in kids))

    roots = [grow(root) for root in children.get(None, [])]
    # A parent cycle (corrupt config) has no root; show such snapshots as roots rather than drop them.
    roots.extend(grow(item) for item in items if item.name not in placed)
    return roots
