"""The deploy saga: from a resolved request to a running, recorded machine, or to nothing at all.

Steps (each journaled; compensations run newest first on failure, or later by ``ops resume``):
validate -> place -> quota -> clone -> configure -> resize -> network -> start -> register.
The clone step remembers the VMID *before* asking PVE for it, and marks the VM's description with the
operation id, so its compensation (stop + purge) can find the VM after a crash and will never touch a
VM that is not ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from autovibe.machines.errors import MachineNameTaken, ProjectNotFound
from autovibe.machines.scheduler import TaskGate, VmidAllocator
from autovibe.operations.runner import OpContext, OperationKind, Step, register
from autovibe.pve import PveApiError, PveClient
from autovibe.security.gate import Gate
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.tables import Machine

KIND = "machine.deploy"
MARKER = "autovibe-operation:"
CLONE_ATTEMPTS = 5
GIB = 1024**3


async def _no_hook(params: Mapping[str, Any]) -> None:
    return None


@dataclass
class DeployHooks:
    """Extension points filled in by later features (quotas, network profiles, checkpoints)."""

    check_quota: Callable[[Mapping[str, Any]], Awaitable[None]] = _no_hook
    # Applies the machine's network profile; returns the profile's name (None: nothing applied).
    apply_network: Callable[[Mapping[str, Any]], Awaitable[str | None]] = _no_hook
    # Before a machine whose profile asks for it is deleted at lease expiry.
    final_checkpoint: Callable[[Mapping[str, Any]], Awaitable[None]] = _no_hook


@dataclass
class MachineDeps:
    """Collaborators of machine operations, shared by every operation of one process."""

    pve: PveClient
    db: Database
    gate: TaskGate = field(default_factory=TaskGate)
    vmids: VmidAllocator = field(default_factory=VmidAllocator)
    hooks: DeployHooks = field(default_factory=DeployHooks)
    now: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    # Who is acting, and the security gate every mutating action passes (the same store by default).
    identity: Identity = LOCAL_ADMIN
    security: Gate = field(default=None)  # type: ignore[assignment]  # filled in __post_init__

    def __post_init__(self) -> None:
        if self.security is None:
            self.security = Gate(self.db)


Ctx = OpContext[MachineDeps]


def marker(op_id: str) -> str:
    return f"{MARKER}{op_id}"


# ---- steps ---------------------------------------------------------------------------------------
async def validate(ctx: Ctx) -> None:
    """Store-side checks right before acting (the request itself was validated before the operation)."""
    p = ctx.params
    with ctx.deps.db.session() as session:
        if repo.project_by_name(session, p["project"]) is None:
            raise ProjectNotFound(
                f"no project '{p['project']}'", hint="create it with `autovibe project create`"
            )
        if repo.machine_by_name(session, p["name"]) is not None:
            raise MachineNameTaken(
                f"a machine named '{p['name']}' already exists", hint="choose another name"
            )


async def place(ctx: Ctx) -> None:
    ctx.remember(node=ctx.params["node"])


async def quota(ctx: Ctx) -> None:
    await ctx.deps.hooks.check_quota(ctx.params)


async def clone(ctx: Ctx) -> None:
    """Clone the template under a fresh VMID; a VMID someone else just took is retried with another."""
    p, deps = ctx.params, ctx.deps
    taken: set[int] = set()
    for _ in range(CLONE_ATTEMPTS):
        vmid = await deps.vmids.take(deps.pve, avoid=taken)
        ctx.remember(vmid=vmid)  # write-ahead: the compensation must know which VM to look for
        try:
            await deps.gate.task(
                deps.pve,
                node=p["node"],
                vmid=vmid,
                template=p["template_vmid"],
                start=lambda vmid=vmid: deps.pve.post(  # type: ignore[misc]
                    f"/nodes/{p['template_node']}/qemu/{p['template_vmid']}/clone", **_clone_params(ctx, vmid)
                ),
                what=f"clone template {p['template_vmid']}",
            )
            return
        except PveApiError as exc:
            if "already exists" not in exc.message:
                raise
            taken.add(vmid)  # another client's VM: never ours to undo
            ctx.remember(vmid=None)
        finally:
            deps.vmids.release(vmid)
    raise RuntimeError(f"no free VMID after {CLONE_ATTEMPTS} attempts (other clients keep taking them)")


def _clone_params(ctx: Ctx, vmid: int) -> dict[str, Any]:
    p = ctx.params
    params: dict[str, Any] = {
        "newid": vmid,
        "name": p["name"],
        "full": p["full_clone"],
        "description": marker(ctx.id),
    }
    if p["node"] != p["template_node"]:
        params["target"] = p["node"]
    if p["full_clone"] and p.get("storage"):
        params["storage"] = p["storage"]
    if p.get("snapname"):  # a branch: clone the disks as they were in that snapshot
        params["snapname"] = p["snapname"]
    return params


async def configure(ctx: Ctx) -> None:
    p, deps = ctx.params, ctx.deps
    node, vmid = ctx.state["node"], ctx.state["vmid"]
    path = f"/nodes/{node}/qemu/{vmid}/config"
    current = await deps.pve.get(path)
    changes: dict[str, Any] = {
        "cores": p["cores"],
        "memory": p["memory_mib"],
        # Tagged so an admin can tell autovibe's VMs apart in the PVE UI; profile tags follow.
        "tags": ";".join(dict.fromkeys(["autovibe", *p["tags"]])),
        "description": f"{marker(ctx.id)}\nautovibe machine {p['name']} "
        f"(project {p['project']}, profile {p['profile']})",
    }
    if "net0" in current:
        changes["net0"] = _with_firewall(str(current["net0"]))
    # Resize needs the boot disk's size: hand it over instead of reading the config a second time.
    ctx.state["scsi0"] = str(current.get("scsi0", ""))
    await deps.gate.retry_locked(lambda: deps.pve.put(path, **changes), what=f"configure VM {vmid}")


def _with_firewall(net: str) -> str:
    parts = [part for part in net.split(",") if not part.startswith("firewall=")]
    return ",".join([*parts, "firewall=1"])


async def resize(ctx: Ctx) -> None:
    p, deps = ctx.params, ctx.deps
    node, vmid = ctx.state["node"], ctx.state["vmid"]
    drive = ctx.state.get("scsi0")
    if drive is None:  # resumed from a journal written before configure recorded it
        drive = str((await deps.pve.get(f"/nodes/{node}/qemu/{vmid}/config")).get("scsi0", ""))
    current = _disk_gib(drive)
    if current is not None and p["disk_gib"] > current:
        await deps.gate.task(
            deps.pve,
            node=node,
            vmid=vmid,
            start=lambda: deps.pve.put(
                f"/nodes/{node}/qemu/{vmid}/resize", disk="scsi0", size=f"{p['disk_gib']}G"
            ),
            what=f"resize VM {vmid}",
        )


def _disk_gib(drive: str) -> float | None:
    for part in drive.split(",")[1:]:
        key, _, value = part.partition("=")
        if key == "size" and value[:-1].replace(".", "", 1).isdigit():
            factor = {"T": 1024, "G": 1, "M": 1 / 1024, "K": 1 / 1024**2}.get(value[-1])
            return float(value[:-1]) * factor if factor else None
    return None


async def network(ctx: Ctx) -> None:
    applied = await ctx.deps.hooks.apply_network({**ctx.params, **ctx.state})
    if applied is not None:
        ctx.remember(network_profile=applied)


async def start(ctx: Ctx) -> None:
    if not ctx.params["start"]:
        return
    deps, node, vmid = ctx.deps, ctx.state["node"], ctx.state["vmid"]
    await deps.gate.task(
        deps.pve,
        node=node,
        vmid=vmid,
        start=lambda: deps.pve.post(f"/nodes/{node}/qemu/{vmid}/status/start"),
        what=f"start VM {vmid}",
    )


async def record(ctx: Ctx) -> None:
    p = ctx.params
    with ctx.deps.db.session() as session:
        project = repo.project_by_name(session, p["project"])
        if project is None:
            raise ProjectNotFound(f"project '{p['project']}' disappeared during the deploy")
        ttl = p.get("ttl_s")
        session.add(
            Machine(
                name=p["name"],
                vmid=ctx.state["vmid"],
                node=ctx.state["node"],
                project_id=project.id,
                profile=p["profile"],
                labels=dict(p.get("labels", {})),
                created_by=p["created_by"],
                operation_id=ctx.id,
                parent_machine=p.get("parent_machine"),
                network_profile=ctx.state.get("network_profile"),
                parent_checkpoint=p.get("parent_checkpoint"),
                expires_at=ctx.deps.now() + timedelta(seconds=ttl) if ttl else None,
            )
        )


# ---- compensations --------------------------------------------------------------------------------
async def unrecord(ctx: Ctx) -> None:
    with ctx.deps.db.session() as session:
        row = repo.machine_by_operation(session, ctx.id)
        if row is not None:
            session.delete(row)


async def destroy_if_ours(ctx: Ctx) -> None:
    """Stop and purge the VM this operation cloned — only if it exists and carries our marker."""
    vmid = ctx.state.get("vmid")
    if vmid is not None:
        await destroy_vm(ctx.deps, vmid, owner_marker=marker(ctx.id))


async def destroy_vm(deps: MachineDeps, vmid: int, *, owner_marker: str | None) -> bool:
    """Stop and delete ``vmid`` (waiting out locks such as a clone still copying). False if absent.

    With ``owner_marker``, a VM whose description lacks it is left alone: it is someone else's.
    """
    pve, gate = deps.pve, deps.gate
    while True:
        rows = [r for r in await pve.cluster_resources(type="vm") if r.vmid == vmid]
        if not rows:
            return False
        node = str(rows[0].node)
        config = await pve.get(f"/nodes/{node}/qemu/{vmid}/config")
        if owner_marker is not None and owner_marker not in str(config.get("description", "")):
            return False
        if config.get("lock") in ("clone", "create"):  # its own task is still running: let it end
            await gate.sleep(1.0)
            continue
        break
    if rows[0].status == "running":
        await gate.task(
            pve,
            node=node,
            vmid=vmid,
            start=lambda: pve.post(f"/nodes/{node}/qemu/{vmid}/status/stop"),
            what=f"stop VM {vmid}",
        )
    await gate.task(
        pve,
        node=node,
        vmid=vmid,
        start=lambda: pve.delete(
            f"/nodes/{node}/qemu/{vmid}", purge=True, **{"destroy-unreferenced-disks": True}
        ),
        what=f"delete VM {vmid}",
    )
    return True


DEPLOY: OperationKind[MachineDeps] = register(
    OperationKind(
        KIND,
        [
            Step("validate", validate),
            Step("place", place),
            Step("quota", quota),
            Step("clone", clone, destroy_if_ours),
            Step("configure", configure),
            Step("resize", resize),
            Step("network", network),
            Step("start", start),
            Step("register", record, unrecord),
        ],
    )
)

__all__ = ["DEPLOY", "DeployHooks", "MachineDeps", "destroy_vm"]
