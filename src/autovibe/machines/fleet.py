"""Deploying one machine or a fleet: plan once, then run the deploy saga per machine, concurrently.

Planning reads ``/cluster/resources`` once for the whole fleet (template location, node loads) and
assigns every machine a node before any clone starts, so a fleet spreads out instead of piling onto the
emptiest node. Operations then run concurrently; the task gate bounds what reaches each node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autovibe.machines.deploy import DEPLOY, KIND, MachineDeps
from autovibe.machines.errors import InvalidMachineRequest, MachineNameTaken, ProjectNotFound
from autovibe.machines.models import MachineCreate, MachineSpec, resolved_spec
from autovibe.machines.placement import node_loads, plan_fleet
from autovibe.machines.profiles import Profile, get_profile
from autovibe.operations.errors import OperationFailed
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord, OpStatus
from autovibe.operations.runner import Runner
from autovibe.security.risk import Subject
from autovibe.store import repositories as repo
from autovibe.store.db import Database

# (machine name, step name, step index, step count); "done" at index == count.
MachineProgress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class DeployOutcome:
    name: str
    # deployed | failed | skipped (a stop was requested before it started); after a cancel also
    # undone (its operation was compensated) | stuck (its undo failed: `autovibe ops resume`)
    status: str
    node: str
    vmid: int | None = None
    operation_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class FleetResult:
    outcomes: tuple[DeployOutcome, ...]

    @property
    def deployed(self) -> list[DeployOutcome]:
        return [o for o in self.outcomes if o.status == "deployed"]

    @property
    def ok(self) -> bool:
        return all(o.status == "deployed" for o in self.outcomes)


async def plan(deps: MachineDeps, spec: MachineSpec, *, created_by: str) -> list[dict[str, Any]]:
    """Check the request against the store and one cluster snapshot; one params dict per machine."""
    with deps.db.session() as session:
        if repo.project_by_name(session, spec.project) is None:
            raise ProjectNotFound(
                f"no project '{spec.project}'", hint=f"create it: autovibe project create {spec.project}"
            )
        taken = [name for name in spec.names if repo.machine_by_name(session, name) is not None]
    if taken:
        raise MachineNameTaken(
            f"machine name(s) already in use: {', '.join(taken)}", hint="choose another name"
        )
    resources = await deps.pve.cluster_resources()
    template = next((r for r in resources if r.type == "qemu" and r.vmid == spec.template_vmid), None)
    if template is None or not template.template:
        raise InvalidMachineRequest(
            f"profile {spec.profile}: template VM {spec.template_vmid} does not exist on this cluster",
            hint="point the profile's template_vmid at a PVE template",
        )
    nodes = plan_fleet(node_loads(resources), spec.demand, len(spec.names), requested=spec.node)
    return [
        _params(spec, name, node, str(template.node), created_by)
        for name, node in zip(spec.names, nodes, strict=True)
    ]


def _params(spec: MachineSpec, name: str, node: str, template_node: str, created_by: str) -> dict[str, Any]:
    return {
        "name": name,
        "project": spec.project,
        "profile": spec.profile,
        "template_vmid": spec.template_vmid,
        "template_node": template_node,
        "node": node,
        "cores": spec.cores,
        "memory_mib": spec.memory_mib,
        "disk_gib": spec.disk_gib,
        "full_clone": spec.full_clone,
        "storage": spec.storage,
        "network_profile": spec.network_profile,
        "tags": list(spec.tags),
        "start": spec.start,
        "ttl_s": spec.ttl.total_seconds() if spec.ttl else None,
        "checkpoint_before_expiry": spec.checkpoint_before_expiry,
        "labels": dict(spec.labels),
        "created_by": created_by,
    }


async def deploy(
    deps: MachineDeps,
    request: MachineCreate,
    profiles: Mapping[str, Profile],
    *,
    actor: str,
    progress: MachineProgress | None = None,
    stop: asyncio.Event | None = None,
    approval: str | None = None,
) -> FleetResult:
    """Deploy every machine of ``request``. Each ends deployed and recorded, or undone and absent.

    Setting ``stop`` (first Ctrl-C) stops *starting* machines; those in flight run to their end.
    """
    spec = resolved_spec(request, get_profile(profiles, request.profile))
    await deps.hooks.check_quota({"project": spec.project})  # refuse up front, before any operation
    names = list(spec.names)
    permit = deps.security.admit(
        deps.identity,
        "machine.create",
        target=f"{len(names)} machine(s) {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}",
        project=spec.project,
        subject=Subject("machine.create", machines=[dict(spec.labels)] * len(names)),
        params={"profile": spec.profile, "count": len(names), "names": names[:50]},
        approval=approval,
    )
    with permit:
        return await _deploy(deps, spec, actor=actor, progress=progress, stop=stop)


async def _deploy(
    deps: MachineDeps,
    spec: MachineSpec,
    *,
    actor: str,
    progress: MachineProgress | None,
    stop: asyncio.Event | None,
) -> FleetResult:
    runner = Runner(Journal(deps.db), deps)

    async def one(params: dict[str, Any]) -> DeployOutcome:
        name, node = params["name"], params["node"]
        if stop is not None and stop.is_set():
            return DeployOutcome(name, "skipped", node)

        def report(step: str, index: int, total: int) -> None:
            if progress is not None:
                progress(name, step, index, total)

        try:
            record = await runner.run(DEPLOY, params, actor=actor, progress=report)
        except OperationFailed as exc:
            return DeployOutcome(name, "failed", node, operation_id=exc.operation_id, error=str(exc))
        return DeployOutcome(name, "deployed", record.state["node"], record.state["vmid"], record.id)

    params_list = await plan(deps, spec, created_by=actor)
    # Operations beyond what the gate lets through would only queue; launching them lazily is what
    # lets a stop request leave the rest unstarted.
    # The window is wider than the node slots so that, while some machines hold slots for their start
    # tasks, others already queue for a clone slot and the shared storage stays busy.
    limits = deps.gate.limits
    window = asyncio.Semaphore(len({p["node"] for p in params_list}) * limits.per_node + limits.per_template)

    async def windowed(params: dict[str, Any]) -> DeployOutcome:
        async with window:
            return await one(params)

    # A TaskGroup (not gather) so that a cancelled fleet returns only after every machine in flight
    # has finished undoing its work.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(windowed(p)) for p in params_list]
    return FleetResult(tuple(task.result() for task in tasks))


def outcomes_after_cancel(
    db: Database, names: Sequence[str], *, since: datetime, why: str
) -> list[DeployOutcome]:
    """Each machine of a fleet deploy cancelled part-way (the deploy ended without outcomes), read back
    from the journal's deploy operations created since ``since``: ``deployed`` (its operation
    completed), ``undone`` (compensated), ``stuck`` (its undo failed) or ``skipped`` (never started).
    ``why`` is what stopped the fleet, for the messages ("stopped by Ctrl-C", "cancelled")."""
    newest: dict[str, OperationRecord] = {}
    for seen in Journal(db).recent(kind=KIND, since=since, limit=max(100, 4 * len(names))):
        newest.setdefault(str(seen.params.get("name")), seen)  # newest first: this fleet's own
    outcomes = []
    for name in names:
        operation = newest.get(name)
        if operation is None:
            outcomes.append(DeployOutcome(name, "skipped", "", error=f"not started: {why}"))
        elif operation.status is OpStatus.COMPLETED:
            node, vmid = str(operation.state.get("node", "")), operation.state.get("vmid")
            outcomes.append(DeployOutcome(name, "deployed", node, vmid, operation.id))
        elif operation.status is OpStatus.COMPENSATED:
            error = f"{why}; everything it did was undone"
            node = str(operation.params.get("node", ""))
            outcomes.append(DeployOutcome(name, "undone", node, operation_id=operation.id, error=error))
        else:
            error = f"{why}; its undo is {operation.status}: run `autovibe ops resume`"
            node = str(operation.params.get("node", ""))
            outcomes.append(DeployOutcome(name, "stuck", node, operation_id=operation.id, error=error))
    return outcomes
