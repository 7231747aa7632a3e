"""Single-machine use cases: find, list, power actions, delete (journaled), leases.

Machines are addressed by name or vmid. Lists read ``/cluster/resources`` once, never once per VM.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from autovibe.machines.deploy import MachineDeps, destroy_vm
from autovibe.machines.errors import MachineNotFound
from autovibe.machines.models import MISSING, MachineRead
from autovibe.machines.profiles import Profile
from autovibe.operations.errors import OperationFailed
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.pve import ClusterResource
from autovibe.security import rbac
from autovibe.security.risk import Subject
from autovibe.store import repositories as repo
from autovibe.store.tables import Machine

PowerAction = Literal["start", "stop", "shutdown", "reboot"]


def find(deps: MachineDeps, ref: str) -> Machine:
    """The tracked machine named ``ref``, or with vmid ``ref``."""
    with deps.db.session() as session:
        row = repo.machine_by_ref(session, ref)
        if row is None:
            raise MachineNotFound(f"no machine '{ref}'", hint="list machines with `autovibe machine list`")
        session.expunge(row)
        return row


def _read(row: Machine, project: str, resources: dict[int, ClusterResource]) -> MachineRead:
    live = resources.get(row.vmid)
    return MachineRead(
        name=row.name,
        vmid=row.vmid,
        node=str(live.node) if live and live.node else row.node,
        project=project,
        profile=row.profile,
        status=str(live.status) if live else MISSING,
        labels={str(k): str(v) for k, v in row.labels.items()},
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        parent_machine=row.parent_machine,
        parent_checkpoint=row.parent_checkpoint,
    )


async def _vms(deps: MachineDeps) -> dict[int, ClusterResource]:
    return {int(r.vmid): r for r in await deps.pve.cluster_resources(type="vm") if r.vmid is not None}


async def list_machines(deps: MachineDeps, *, project: str | None = None) -> list[MachineRead]:
    """The machines the acting identity may see (its projects only, for a project-scoped role)."""
    if project is not None:
        rbac.check(deps.identity, "machine.read", project)
    with deps.db.session() as session:
        rows = [
            (row, row.project.name)
            for row in repo.machines(session, project=project)
            if rbac.can(deps.identity, "machine.read", row.project.name)
        ]
    live = await _vms(deps)
    return [_read(row, name, live) for row, name in rows]


async def show(deps: MachineDeps, ref: str) -> MachineRead:
    row = find(deps, ref)
    with deps.db.session() as session:
        project = session.get_one(Machine, row.id).project.name
    rbac.check(deps.identity, "machine.read", project)
    return _read(row, project, await _vms(deps))


def project_of(deps: MachineDeps, row: Machine) -> str:
    with deps.db.session() as session:
        return session.get_one(Machine, row.id).project.name


def subject_of(action: str, row: Machine, **details: Any) -> Subject:
    """What the security gate weighs for an action on one machine: its labels, and ``details``."""
    return Subject(action, machines=[{str(k): str(v) for k, v in row.labels.items()}], details=details)


async def power(
    deps: MachineDeps, ref: str, action: PowerAction, *, approval: str | None = None
) -> MachineRead:
    """Start, stop, shut down or reboot, waiting for PVE's task (lock conflicts are retried)."""
    row = find(deps, ref)
    live = (await _vms(deps)).get(row.vmid)
    if live is None:
        raise MachineNotFound(
            f"machine '{row.name}' (VM {row.vmid}) no longer exists in PVE",
            hint=f"remove the record with `autovibe machine delete {row.name}`",
        )
    node = str(live.node)
    async with deps.security.guard(
        deps.identity,
        f"machine.{action}",
        target=f"machine {row.name}",
        project=project_of(deps, row),
        subject=subject_of(f"machine.{action}", row),
        params={"vmid": row.vmid},
        approval=approval,
    ):
        await deps.gate.task(
            deps.pve,
            node=node,
            vmid=row.vmid,
            start=lambda: deps.pve.post(f"/nodes/{node}/qemu/{row.vmid}/status/{action}"),
            what=f"{action} VM {row.vmid}",
        )
    return await show(deps, row.name)


# ---- delete: a forward-only operation (a deleted disk cannot be undeleted) -------------------------
async def _checkpoint(ctx: OpContext[MachineDeps]) -> None:
    if ctx.params.get("final_checkpoint"):
        await ctx.deps.hooks.final_checkpoint(ctx.params)


async def _destroy(ctx: OpContext[MachineDeps]) -> None:
    await destroy_vm(ctx.deps, int(ctx.params["vmid"]), owner_marker=None)


async def _unregister(ctx: OpContext[MachineDeps]) -> None:
    with ctx.deps.db.session() as session:
        row = repo.machine_by_vmid(session, int(ctx.params["vmid"]))
        if row is not None:
            session.delete(row)


DELETE = register(
    OperationKind(
        "machine.delete",
        [Step("checkpoint", _checkpoint), Step("destroy", _destroy), Step("unregister", _unregister)],
        resume="finish",
    )
)


async def delete(
    deps: MachineDeps,
    ref: str,
    *,
    actor: str,
    reason: str = "requested",
    final_checkpoint: bool = False,
    approval: str | None = None,
) -> OperationRecord:
    """Stop and purge the VM, then forget the machine. Resumable: ``ops resume`` finishes it.

    ``final_checkpoint`` runs the checkpoint hook first (lease expiry of a profile that asks for it).
    """
    row = find(deps, ref)
    params: dict[str, Any] = {
        "name": row.name,
        "vmid": row.vmid,
        "reason": reason,
        "profile": row.profile,
        "final_checkpoint": final_checkpoint,
    }
    async with deps.security.guard(
        deps.identity,
        "machine.delete",
        target=f"machine {row.name}",
        project=project_of(deps, row),
        subject=subject_of("machine.delete", row),
        params={"vmid": row.vmid, "reason": reason},
        approval=approval,
    ):
        return await Runner(Journal(deps.db), deps).run(DELETE, params, actor=actor)


# ---- leases --------------------------------------------------------------------------------------
def extend_lease(deps: MachineDeps, ref: str, ttl: timedelta) -> datetime:
    """Push the machine's expiry ``ttl`` further (from now if it had none or has passed)."""
    row = find(deps, ref)
    now = deps.now()
    with (
        deps.security.guard_sync(
            deps.identity,
            "machine.extend",
            target=f"machine {row.name}",
            project=project_of(deps, row),
            params={"ttl_s": ttl.total_seconds()},
        ),
        deps.db.session() as session,
    ):
        stored = session.get_one(Machine, row.id)
        base = stored.expires_at if stored.expires_at and stored.expires_at > now else now
        stored.expires_at = base + ttl
        return stored.expires_at


async def expire_due(
    deps: MachineDeps, profiles: Mapping[str, Profile], *, actor: str
) -> list[OperationRecord]:
    """Delete every machine whose lease has run out (one pass of the hub's scheduler loop), taking a
    final checkpoint first when its profile asks for one."""
    now = deps.now()
    with deps.db.session() as session:
        due = [(m.name, m.profile) for m in repo.machines(session) if m.expires_at and m.expires_at <= now]
    done = []
    for name, profile in due:
        wants = profiles[profile].checkpoint_before_expiry if profile in profiles else False
        try:
            done.append(await delete(deps, name, actor=actor, reason="lease expired", final_checkpoint=wants))
        except OperationFailed as exc:  # one machine's trouble must not keep the others alive
            done.append(Journal(deps.db).get(exc.operation_id))
    return done


async def resize(
    deps: MachineDeps,
    ref: str,
    *,
    cores: int | None = None,
    memory_mib: int | None = None,
    disk_gib: int | None = None,
    approval: str | None = None,
) -> MachineRead:
    """Change a machine's cores and memory (PVE applies them at the next boot) and grow its boot disk."""
    row = find(deps, ref)
    live = (await _vms(deps)).get(row.vmid)
    if live is None:
        raise MachineNotFound(f"machine '{row.name}' (VM {row.vmid}) no longer exists in PVE")
    node, path = str(live.node), f"/nodes/{live.node}/qemu/{row.vmid}"
    changes = {k: v for k, v in {"cores": cores, "memory": memory_mib}.items() if v is not None}
    async with deps.security.guard(
        deps.identity, "machine.resize", target=f"machine {row.name}", project=project_of(deps, row),
        subject=subject_of("machine.resize", row), params={**changes, "disk_gib": disk_gib},
        approval=approval,
    ):  # fmt: skip
        if changes:
            await deps.gate.retry_locked(
                lambda: deps.pve.put(f"{path}/config", **changes), what=f"resize VM {row.vmid}"
            )
        if disk_gib is not None:
            await deps.gate.task(
                deps.pve, node=node, vmid=row.vmid,
                start=lambda: deps.pve.put(f"{path}/resize", disk="scsi0", size=f"{disk_gib}G"),
                what=f"grow the disk of VM {row.vmid}",
            )  # fmt: skip
    return await show(deps, row.name)
