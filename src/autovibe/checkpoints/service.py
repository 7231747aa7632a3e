"""Checkpoint use cases: the tree, create, show, restore, branch, delete, pin.

Every change runs as a journaled operation (``checkpoint.create|restore|branch|delete``) through the
machines' :class:`~autovibe.machines.scheduler.TaskGate`, so PVE's locks (another snapshot, a backup)
are waited out up to the gate's deadline instead of failing at once. Checks that can refuse a request
(names, existence, ZFS's newest-only rollback, pins) run before the operation starts, so a refused
request leaves nothing behind and keeps its own error kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autovibe.checkpoints.errors import (
    BranchNotPossible,
    CheckpointExists,
    CheckpointNotFound,
    CheckpointProtected,
    InvalidCheckpointRequest,
    MachineMissingInPve,
    RestoreNeedsDiscard,
)
from autovibe.checkpoints.models import (
    Checkpoint,
    CheckpointDetail,
    CheckpointTree,
    check_name,
    comparable,
    config_changes,
    generated_name,
    oldest_first,
)
from autovibe.machines import service as machines
from autovibe.machines.deploy import DEPLOY, MachineDeps
from autovibe.machines.errors import MachineNameTaken, ProjectNotFound
from autovibe.machines.models import check_vm_name
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.pve import PveApiError
from autovibe.security import rbac
from autovibe.security.gate import Permit
from autovibe.security.risk import Risk, Subject
from autovibe.store import repositories as repo
from autovibe.store.tables import CheckpointMark, Machine

Ctx = OpContext[MachineDeps]
# Storage types whose snapshots roll back only to the newest one (PVE's volume_rollback_is_possible).
NEWEST_ONLY_STORAGE = frozenset({"zfspool", "zfs"})
# Storage types whose `copy` feature lacks snapshots: PVE cannot full-clone from them (no branch).
NO_COPY_FROM_SNAPSHOT = frozenset({"zfspool", "zfs"})
_DISK_KEY_PREFIXES = ("scsi", "virtio", "sata", "ide", "efidisk", "tpmstate")


@dataclass(frozen=True)
class Target:
    """A tracked machine as PVE sees it right now."""

    machine_id: int
    name: str
    vmid: int
    node: str
    status: str
    project: str
    profile: str
    labels: dict[str, str]

    @property
    def path(self) -> str:
        return f"/nodes/{self.node}/qemu/{self.vmid}"


async def locate(deps: MachineDeps, ref: str) -> Target:
    """The machine ``ref`` (name or vmid) with its live node and status (one cluster read)."""
    row = machines.find(deps, ref)
    found = (await targets(deps, [row.id]))[row.id]
    if isinstance(found, str):
        raise MachineMissingInPve(
            f"machine '{row.name}' (VM {row.vmid}) no longer exists in PVE",
            hint=f"remove the record with `autovibe machine delete {row.name}`",
        )
    return found


async def targets(deps: MachineDeps, machine_ids: Sequence[int]) -> dict[int, Target | str]:
    """Live targets of many machines from one cluster read; a machine PVE lost maps to its name."""
    with deps.db.session() as session:
        rows = [session.get_one(Machine, machine_id) for machine_id in machine_ids]
        facts = [
            (r.id, r.name, r.vmid, r.project.name, r.profile, {str(k): str(v) for k, v in r.labels.items()})
            for r in rows
        ]
    live = {r.vmid: r for r in await deps.pve.cluster_resources(type="vm") if r.vmid is not None}
    out: dict[int, Target | str] = {}
    for machine_id, name, vmid, project, profile, labels in facts:
        resource = live.get(vmid)
        out[machine_id] = (
            name
            if resource is None
            else Target(
                machine_id, name, vmid, str(resource.node), str(resource.status), project, profile, labels
            )
        )
    return out


def _guard(
    deps: MachineDeps, action: str, target: Target, checkpoint: str, approval: str | None, **details: Any
) -> AbstractAsyncContextManager[Risk]:
    """The security gate for a checkpoint action (roles, risk, approval, audit record)."""
    return deps.security.guard(
        deps.identity,
        action,
        target=f"checkpoint {checkpoint} of machine {target.name}",
        project=target.project,
        subject=Subject(action, machines=[target.labels], details=details),
        params={"vmid": target.vmid, "checkpoint": checkpoint, **details},
        approval=approval,
    )


def _guard_sync(deps: MachineDeps, action: str, target: Target, checkpoint: str, **details: Any) -> Permit:
    return deps.security.guard_sync(
        deps.identity,
        action,
        target=f"checkpoint {checkpoint} of machine {target.name}",
        project=target.project,
        subject=Subject(action, machines=[target.labels], details=details),
        params={"vmid": target.vmid, "checkpoint": checkpoint, **details},
    )


# ---- reading -------------------------------------------------------------------------------------
async def tree(deps: MachineDeps, ref: str) -> CheckpointTree:
    target = await locate(deps, ref)
    rbac.check(deps.identity, "checkpoint.read", target.project)
    return await read_tree(deps, target)


async def read_tree(deps: MachineDeps, target: Target) -> CheckpointTree:
    """PVE's snapshot list joined with autovibe's marks and the machines branched from each."""
    raw: list[dict[str, Any]] = await deps.pve.get(f"{target.path}/snapshot")
    with deps.db.session() as session:
        marks = {
            m.name: (m.pinned, m.created_by)
            for m in session.scalars(
                select(CheckpointMark).where(CheckpointMark.machine_id == target.machine_id)
            )
        }
        branches: dict[str, list[str]] = defaultdict(list)
        for child in session.scalars(select(Machine).where(Machine.parent_machine == target.name)):
            if child.parent_checkpoint:
                branches[child.parent_checkpoint].append(child.name)
    here: str | None = None
    found = []
    for entry in raw:
        name = str(entry["name"])
        if name == "current":
            here = str(entry["parent"]) if entry.get("parent") else None
            continue
        pinned, created_by = marks.get(name, (False, None))
        snaptime = entry.get("snaptime")
        found.append(
            Checkpoint(
                name=name,
                time=datetime.fromtimestamp(int(snaptime), UTC) if snaptime is not None else None,
                ram=bool(entry.get("vmstate")),
                description=str(entry.get("description") or "").strip(),
                parent=str(entry["parent"]) if entry.get("parent") else None,
                pinned=pinned,
                branches=tuple(sorted(branches.get(name, ()))),
                created_by=created_by or None,
            )
        )
    return CheckpointTree(
        machine=target.name,
        vmid=target.vmid,
        node=target.node,
        status=target.status,
        here=here,
        checkpoints=oldest_first(found),
    )


def _require(tree: CheckpointTree, name: str) -> Checkpoint:
    found = tree.get(name)
    if found is None:
        names = ", ".join(c.name for c in tree.checkpoints) or "none yet"
        raise CheckpointNotFound(
            f"machine '{tree.machine}' has no checkpoint '{name}'", hint=f"its checkpoints: {names}"
        )
    return found


async def show(deps: MachineDeps, ref: str, name: str) -> CheckpointDetail:
    """One checkpoint with its saved config and what differs from the machine's config now."""
    target = await locate(deps, ref)
    rbac.check(deps.identity, "checkpoint.read", target.project)
    checkpoint = _require(await read_tree(deps, target), name)
    saved = await deps.pve.get(f"{target.path}/snapshot/{name}/config")
    current = await deps.pve.get(f"{target.path}/config")
    return CheckpointDetail(
        machine=target.name,
        checkpoint=checkpoint,
        config=comparable(saved),
        changes=config_changes(saved, current),
    )


# ---- create --------------------------------------------------------------------------------------
async def _take_snapshot(ctx: Ctx) -> None:
    p, deps = ctx.params, ctx.deps
    path = f"/nodes/{p['node']}/qemu/{p['vmid']}/snapshot"
    args: dict[str, Any] = {"snapname": p["checkpoint"]}
    if p["ram"]:
        args["vmstate"] = 1
    if p["description"]:
        args["description"] = p["description"]
    await deps.gate.task(
        deps.pve,
        node=p["node"],
        vmid=p["vmid"],
        start=lambda: deps.pve.post(path, **args),
        what=f"snapshot VM {p['vmid']}",
    )
    ctx.remember(taken=True)


async def _untake_snapshot(ctx: Ctx) -> None:
    """Only a snapshot this operation took is removed (a name clash means it is someone else's)."""
    if ctx.state.get("taken"):
        await delete_snapshot(ctx.deps, ctx.params["node"], ctx.params["vmid"], ctx.params["checkpoint"])


async def _mark(ctx: Ctx) -> None:
    p = ctx.params
    with ctx.deps.db.session() as session:
        mark = _mark_row(session, p["machine_id"], p["checkpoint"])
        mark.pinned = bool(p["pin"])
        mark.created_by = p["actor"]
        mark.operation_id = ctx.id


def _mark_row(session: Session, machine_id: int, name: str) -> CheckpointMark:
    row = session.scalars(
        select(CheckpointMark).where(CheckpointMark.machine_id == machine_id, CheckpointMark.name == name)
    ).one_or_none()
    if row is None:
        row = CheckpointMark(machine_id=machine_id, name=name)
        session.add(row)
    return row


CREATE = register(
    OperationKind(
        "checkpoint.create",
        [Step("snapshot", _take_snapshot, _untake_snapshot), Step("mark", _mark)],
    )
)


@dataclass(frozen=True)
class Created:
    checkpoint: Checkpoint
    operation_id: str
    ram_skipped: bool  # RAM was asked for but the machine is not running (PVE saves none then)


async def create(
    deps: MachineDeps,
    ref: str,
    name: str | None = None,
    *,
    ram: bool | None = None,
    description: str = "",
    pin: bool = False,
    actor: str,
    prefix: str = "ckpt",
    approval: str | None = None,
) -> Created:
    """Snapshot the machine (with RAM when it runs, unless ``ram`` says otherwise)."""
    if name is not None:
        check_name(name)
    target = await locate(deps, ref)
    current = await read_tree(deps, target)
    if name is None:
        name = generated_name(deps.now(), {c.name for c in current.checkpoints}, prefix=prefix)
    elif current.get(name) is not None:
        raise CheckpointExists(
            f"machine '{target.name}' already has a checkpoint '{name}'",
            hint="choose another name, or delete the old one first",
        )
    running = target.status == "running"
    with_ram = running if ram is None else ram and running
    params = {
        "machine": target.name,
        "machine_id": target.machine_id,
        "vmid": target.vmid,
        "node": target.node,
        "checkpoint": name,
        "ram": with_ram,
        "description": description,
        "pin": pin,
        "actor": actor,
    }
    async with _guard(deps, "checkpoint.create", target, name, approval, ram=with_ram, pin=pin):
        record = await Runner(Journal(deps.db), deps).run(CREATE, params, actor=actor)
    taken = _require(await read_tree(deps, target), name)
    return Created(taken, record.id, ram_skipped=bool(ram) and not running)


# ---- restore -------------------------------------------------------------------------------------
async def _discard_newer(ctx: Ctx) -> None:
    """Delete the newer checkpoints ZFS insists on, newest first; remembers each as it goes."""
    p = ctx.params
    done = list(ctx.state.get("discarded", []))
    for name in p["discard"]:
        if name in done:
            continue
        await delete_snapshot(ctx.deps, p["node"], p["vmid"], name)
        drop_mark(ctx.deps, p["machine_id"], name)
        done.append(name)
        ctx.remember(discarded=done)


async def _rollback(ctx: Ctx) -> None:
    p, deps = ctx.params, ctx.deps
    path = f"/nodes/{p['node']}/qemu/{p['vmid']}/snapshot/{p['checkpoint']}/rollback"
    args = {"start": 1} if p["start"] else {}
    await deps.gate.task(
        deps.pve,
        node=p["node"],
        vmid=p["vmid"],
        start=lambda: deps.pve.post(path, **args),
        what=f"roll VM {p['vmid']} back to '{p['checkpoint']}'",
    )


# Forward-only: a discarded checkpoint cannot come back, so a failure is finished by `ops resume`.
RESTORE = register(
    OperationKind(
        "checkpoint.restore",
        [Step("discard-newer", _discard_newer), Step("rollback", _rollback)],
        resume="finish",
    )
)


@dataclass(frozen=True)
class Restored:
    machine: str
    checkpoint: str
    status: str
    discarded: tuple[str, ...]
    operation_id: str


async def rollback_blockers(deps: MachineDeps, target: Target, tree: CheckpointTree, name: str) -> list[str]:
    """Newer checkpoints that stop a rollback to ``name``: only on storage that rolls back to the
    newest snapshot alone (ZFS). Names newest first; empty when the rollback is possible as is."""
    newer = tree.newer_than(name)
    if not newer or not await _storage_types(deps, target, name) & NEWEST_ONLY_STORAGE:
        return []
    return [c.name for c in newer]


async def _storage_types(deps: MachineDeps, target: Target, name: str) -> set[str]:
    """The storage types (zfspool, lvmthin, rbd...) holding the disks of checkpoint ``name``."""
    config = await deps.pve.get(f"{target.path}/snapshot/{name}/config")
    storages = {_disk_storage(str(v)) for k, v in config.items() if _is_disk(k, str(v))} - {None}
    types = {str(s["storage"]): str(s.get("type", "")) for s in await deps.pve.get("/storage")}
    return {types.get(str(s), "") for s in storages}


def _is_disk(key: str, value: str) -> bool:
    stem = key.rstrip("0123456789")
    return stem in _DISK_KEY_PREFIXES and stem != key and "media=cdrom" not in value


def _disk_storage(value: str) -> str | None:
    volume = value.split(",", 1)[0]
    return volume.split(":", 1)[0] if ":" in volume and volume != "none" else None


async def restore(
    deps: MachineDeps,
    ref: str,
    name: str,
    *,
    start: bool = False,
    discard_newer: bool = False,
    actor: str,
    approval: str | None = None,
) -> Restored:
    """Roll the machine back to ``name``. A checkpoint with RAM comes back running; ``start`` starts
    one without RAM afterwards. On ZFS, newer checkpoints must go first (``discard_newer``)."""
    target = await locate(deps, ref)
    current = await read_tree(deps, target)
    _require(current, name)
    blockers = await rollback_blockers(deps, target, current, name)
    if blockers and not discard_newer:
        listed = ", ".join(blockers)
        raise RestoreNeedsDiscard(
            f"cannot restore '{name}' on machine '{target.name}': its disks are on ZFS, which rolls back "
            f"only to the newest snapshot, and {len(blockers)} newer checkpoint(s) exist ({listed})",
            hint="add --discard-newer to delete them first (high risk: they are gone for good); to keep "
            "them, move the machine's disks to storage that rolls back to any snapshot (LVM-thin, Ceph "
            "RBD) first, since PVE cannot branch from a ZFS snapshot either",
        )
    protected = [c for c in (current.get(n) for n in blockers) if c is not None and (c.pinned or c.branches)]
    if protected:
        raise CheckpointProtected(
            "--discard-newer would delete protected checkpoint(s): "
            + ", ".join(_why_protected(c) for c in protected),
            hint="unpin them first (`autovibe checkpoint unpin`), or branch instead of restoring",
        )
    params = {
        "machine": target.name,
        "machine_id": target.machine_id,
        "vmid": target.vmid,
        "node": target.node,
        "checkpoint": name,
        "start": start,
        "discard": blockers,
    }
    details = {"start": start, "discard_newer": len(blockers)} if blockers else {"start": start}
    async with _guard(deps, "checkpoint.restore", target, name, approval, **details):
        record = await Runner(Journal(deps.db), deps).run(RESTORE, params, actor=actor)
    after = await locate(deps, target.name)
    return Restored(target.name, name, after.status, tuple(blockers), record.id)


def _why_protected(checkpoint: Checkpoint) -> str:
    if checkpoint.pinned:
        return f"'{checkpoint.name}' (pinned)"
    return f"'{checkpoint.name}' (branched into {', '.join(checkpoint.branches)})"


# ---- branch --------------------------------------------------------------------------------------
async def _source_exists(ctx: Ctx) -> None:
    p = ctx.params
    names = {
        str(s["name"])
        for s in await ctx.deps.pve.get(f"/nodes/{p['template_node']}/qemu/{p['template_vmid']}/snapshot")
    }
    if p["snapname"] not in names:
        raise CheckpointNotFound(f"checkpoint '{p['snapname']}' was deleted before the branch started")


# The deploy saga with a snapshot as the clone source: it compensates the same way (no orphan VM).
BRANCH = register(OperationKind("checkpoint.branch", [Step("source", _source_exists), *DEPLOY.steps]))


async def branch(
    deps: MachineDeps,
    ref: str,
    name: str,
    *,
    new_name: str,
    project: str | None = None,
    node: str | None = None,
    start: bool = True,
    actor: str,
    progress: Callable[[str, int, int], None] | None = None,
    approval: str | None = None,
) -> OperationRecord:
    """Full-clone checkpoint ``name`` into a new machine ``new_name`` with lineage recorded.

    PVE clones the disks as they were in the checkpoint, not its RAM: the branch boots fresh.
    """
    try:
        check_vm_name(new_name)
    except ValueError as exc:
        raise InvalidCheckpointRequest(f"--as: {exc}") from None
    target = await locate(deps, ref)
    checkpoint = _require(await read_tree(deps, target), name)
    if await _storage_types(deps, target, name) & NO_COPY_FROM_SNAPSHOT:
        raise BranchNotPossible(
            f"cannot branch from checkpoint '{name}' of machine '{target.name}': its disks are on ZFS, "
            "and PVE cannot full-clone from a ZFS snapshot",
            hint=f"restore it instead (`autovibe checkpoint restore {target.name} {name}`), or move the "
            "machine's disks to LVM-thin or Ceph RBD storage for future branches",
        )
    with deps.db.session() as session:
        if repo.machine_by_name(session, new_name) is not None:
            raise MachineNameTaken(f"a machine named '{new_name}' already exists", hint="choose another name")
        if project is not None and repo.project_by_name(session, project) is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint="list projects with `autovibe project list`"
            )
    if project is not None and project != target.project:
        # The new machine lands in another project: the caller must be allowed to create machines there.
        rbac.check(deps.identity, "machine.create", project)
    saved = await deps.pve.get(f"{target.path}/snapshot/{name}/config")
    tags = [t for t in str(saved.get("tags", "")).split(";") if t and t != "autovibe"]
    params: dict[str, Any] = {
        "name": new_name,
        "project": project or target.project,
        "profile": target.profile,
        "template_vmid": target.vmid,
        "template_node": target.node,
        "node": node or target.node,
        "cores": int(saved.get("cores", 1)),
        "memory_mib": int(saved.get("memory", 512)),
        "disk_gib": 0,  # the branch keeps the checkpoint's disk sizes
        "full_clone": True,
        "storage": None,
        "network_profile": None,
        "tags": tags,
        "start": start,
        "ttl_s": None,
        "checkpoint_before_expiry": False,
        "labels": target.labels,
        "created_by": actor,
        "snapname": checkpoint.name,
        "parent_machine": target.name,
        "parent_checkpoint": checkpoint.name,
    }
    async with _guard(deps, "checkpoint.branch", target, name, approval, new_machine=new_name):
        return await Runner(Journal(deps.db), deps).run(BRANCH, params, actor=actor, progress=progress)


# ---- delete, pin ---------------------------------------------------------------------------------
async def delete_snapshot(deps: MachineDeps, node: str, vmid: int, name: str) -> None:
    """Delete a snapshot, waiting out locks; one that is already gone counts as deleted."""
    try:
        await deps.gate.task(
            deps.pve,
            node=node,
            vmid=vmid,
            start=lambda: deps.pve.delete(f"/nodes/{node}/qemu/{vmid}/snapshot/{name}"),
            what=f"delete checkpoint '{name}' of VM {vmid}",
        )
    except PveApiError as exc:
        if "does not exist" not in exc.message:
            raise


def drop_mark(deps: MachineDeps, machine_id: int, name: str) -> None:
    with deps.db.session() as session:
        row = session.scalars(
            select(CheckpointMark).where(CheckpointMark.machine_id == machine_id, CheckpointMark.name == name)
        ).one_or_none()
        if row is not None:
            session.delete(row)


async def _delete_step(ctx: Ctx) -> None:
    p = ctx.params
    await delete_snapshot(ctx.deps, p["node"], p["vmid"], p["checkpoint"])
    drop_mark(ctx.deps, p["machine_id"], p["checkpoint"])


DELETE = register(OperationKind("checkpoint.delete", [Step("delete", _delete_step)], resume="finish"))


async def delete(
    deps: MachineDeps, ref: str, name: str, *, actor: str, force: bool = False, approval: str | None = None
) -> OperationRecord:
    """Delete a checkpoint. A pinned one is refused unless ``force``; a branch point only warns
    (branches are full clones and do not need it)."""
    target = await locate(deps, ref)
    checkpoint = _require(await read_tree(deps, target), name)
    if checkpoint.pinned and not force:
        raise CheckpointProtected(
            f"checkpoint '{name}' of machine '{target.name}' is pinned",
            hint=f"unpin it first: `autovibe checkpoint unpin {target.name} {name}`",
        )
    params = {
        "machine": target.name,
        "machine_id": target.machine_id,
        "vmid": target.vmid,
        "node": target.node,
        "checkpoint": name,
    }
    async with _guard(deps, "checkpoint.delete", target, name, approval, force=force and checkpoint.pinned):
        return await Runner(Journal(deps.db), deps).run(DELETE, params, actor=actor)


async def pin(deps: MachineDeps, ref: str, name: str, *, pinned: bool = True) -> Checkpoint:
    """Pin (or unpin) a checkpoint: retention never removes a pinned one."""
    target = await locate(deps, ref)
    _require(await read_tree(deps, target), name)
    with _guard_sync(deps, "checkpoint.pin", target, name, pinned=pinned), deps.db.session() as session:
        _mark_row(session, target.machine_id, name).pinned = pinned
    return _require(await read_tree(deps, target), name)


__all__ = [
    "BRANCH",
    "CREATE",
    "DELETE",
    "RESTORE",
    "Created",
    "Restored",
    "Target",
    "branch",
    "create",
    "delete",
    "delete_snapshot",
    "drop_mark",
    "locate",
    "pin",
    "read_tree",
    "restore",
    "rollback_blockers",
    "show",
    "targets",
    "tree",
]
