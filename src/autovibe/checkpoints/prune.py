"""Prune: apply retention policies to machines' checkpoints.

:func:`plan_prune` reads each machine's checkpoints (one cluster read, then one snapshot list per
machine) and asks the pure engine (:mod:`autovibe.checkpoints.retention`) what to keep. :func:`apply`
deletes the rest as one journaled operation (``retention.apply``): machines in parallel within the
gate's per-node limit, one deletion at a time per machine (PVE locks the VM for each). A deletion that
meets a lock (a backup, another snapshot task) is put back and retried after the others, until
``lock_wait_s`` has passed; what is still locked then is reported as *deferred*, not failed, and the
next prune picks it up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import select

from autovibe.checkpoints.errors import InvalidCheckpointRequest
from autovibe.checkpoints.policies import effective
from autovibe.checkpoints.retention import RetentionPolicy, plan
from autovibe.checkpoints.service import Target, drop_mark, read_tree, targets
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import ProjectNotFound
from autovibe.machines.scheduler import is_lock_conflict, lock_reason
from autovibe.machines.service import find
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.pve import PveError
from autovibe.security.risk import Subject
from autovibe.store import repositories as repo
from autovibe.store.tables import CheckpointMark, Machine

Outcome = Literal["keep", "remove", "removed", "deferred", "failed", "kept"]


class PruneItem(BaseModel):
    """One checkpoint's fate. ``outcome``: ``keep``/``remove`` in a plan; after applying, ``kept``,
    ``removed``, ``deferred`` (locked until the deadline; the next prune retries) or ``failed``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    checkpoint: str
    time: AwareDatetime | None
    keep: bool
    reasons: tuple[str, ...]
    outcome: Outcome
    error: str | None = None


class MachinePlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    machine_id: int
    vmid: int
    node: str
    policy: str | None  # the policy's name; "(command line)" for flags given to the command
    skipped: str | None = None  # why the machine is left alone (no policy, VM gone)
    items: tuple[PruneItem, ...] = ()

    @property
    def to_remove(self) -> list[PruneItem]:
        return [i for i in self.items if not i.keep]


AD_HOC = "(command line)"


async def plan_prune(
    deps: MachineDeps,
    *,
    project: str | None = None,
    machine: str | None = None,
    override: RetentionPolicy | None = None,
) -> list[MachinePlan]:
    """What a prune would do to every machine in scope (one machine, a project, or all)."""
    if project is not None and machine is not None:
        raise InvalidCheckpointRequest("give a machine or --project, not both")
    chosen_id = find(deps, machine).id if machine is not None else None
    with deps.db.session() as session:
        if chosen_id is not None:
            rows = [session.get_one(Machine, chosen_id)]
        else:
            if project is not None and repo.project_by_name(session, project) is None:
                raise ProjectNotFound(
                    f"no project '{project}'", hint="list projects with `autovibe project list`"
                )
            rows = repo.machines(session, project=project)
        policies = {row.id: (AD_HOC, override) if override else effective(session, row) for row in rows}
    live = await targets(deps, list(policies))
    return list(await asyncio.gather(*(_plan_one(deps, live[i], i, policies[i]) for i in policies)))


async def _plan_one(
    deps: MachineDeps, target: Target | str, machine_id: int, chosen: tuple[str, RetentionPolicy] | None
) -> MachinePlan:
    if isinstance(target, str):  # the machine's name: PVE no longer has its VM
        return MachinePlan(
            machine=target, machine_id=machine_id, vmid=0, node="", policy=None,
            skipped="its VM no longer exists in PVE",
        )  # fmt: skip
    if chosen is None:
        return MachinePlan(
            machine=target.name, machine_id=machine_id, vmid=target.vmid, node=target.node, policy=None,
            skipped="no retention policy attached",
        )  # fmt: skip
    name, policy = chosen
    tree = await read_tree(deps, target)
    times = {c.name: c.time for c in tree.checkpoints}
    decisions = plan([c for c in tree.checkpoints if c.time is not None], policy, now=deps.now())
    items = tuple(
        PruneItem(
            machine=target.name,
            checkpoint=d.name,
            time=times[d.name],
            keep=d.keep,
            reasons=d.reasons,
            outcome="keep" if d.keep else "remove",
        )
        for d in decisions
    )
    return MachinePlan(
        machine=target.name, machine_id=machine_id, vmid=target.vmid, node=target.node, policy=name,
        items=items,
    )  # fmt: skip


# ---- applying ------------------------------------------------------------------------------------
@dataclass
class _Sweep:
    """Deletion progress, remembered in the operation's state after each deletion."""

    ctx: OpContext[MachineDeps]
    done: dict[str, str] = field(default_factory=dict)  # "vmid/name" -> outcome
    errors: dict[str, str] = field(default_factory=dict)

    def record(self, key: str, outcome: str, error: str | None = None) -> None:
        self.done[key] = outcome
        if error:
            self.errors[key] = error
        self.ctx.remember(outcomes=dict(self.done), errors=dict(self.errors))


async def _delete_once(deps: MachineDeps, node: str, vmid: int, name: str) -> None:
    async with deps.gate.slot(node, vmid):
        upid = await deps.pve.delete(f"/nodes/{node}/qemu/{vmid}/snapshot/{name}")
        await deps.pve.wait_task(upid, poll=deps.gate.poll)


def _pinned_now(deps: MachineDeps, machine_id: int, name: str) -> bool:
    """Pinned since the plan was made? (A pin always wins over a plan.)"""
    with deps.db.session() as session:
        return bool(
            session.scalars(
                select(CheckpointMark.pinned).where(
                    CheckpointMark.machine_id == machine_id, CheckpointMark.name == name
                )
            ).one_or_none()
        )


async def _sweep_machine(sweep: _Sweep, machine: dict[str, Any], lock_wait_s: float) -> None:
    """Delete one machine's checkpoints in turn; locked ones go round again until ``lock_wait_s`` of
    waiting (measured by the gate's own sleeps, so a simulated clock works too) has been spent."""
    deps = sweep.ctx.deps
    queue = [n for n in machine["remove"] if f"{machine['vmid']}/{n}" not in sweep.done]
    waited, delay = 0.0, deps.gate.limits.lock_retry_s
    while queue:
        retry: list[str] = []
        reason = "locked"
        for name in queue:
            key = f"{machine['vmid']}/{name}"
            if _pinned_now(deps, machine["machine_id"], name):
                sweep.record(key, "kept", "pinned after the plan was made")
                continue
            try:
                await _delete_once(deps, machine["node"], machine["vmid"], name)
            except PveError as exc:
                if is_lock_conflict(exc):
                    retry.append(name)
                    reason = lock_reason(exc)
                elif "does not exist" in str(exc):
                    sweep.record(key, "removed")  # someone else deleted it meanwhile
                else:
                    sweep.record(key, "failed", str(exc))
                continue
            drop_mark(deps, machine["machine_id"], name)
            sweep.record(key, "removed")
        queue = retry
        pause = delay * (0.5 + deps.gate.rng.random())
        if queue and waited + pause > lock_wait_s:
            for name in queue:
                sweep.record(f"{machine['vmid']}/{name}", "deferred", f"{reason} until the wait ran out")
            return
        if queue:
            if deps.gate.on_wait is not None:
                deps.gate.on_wait(f"delete {len(queue)} checkpoint(s) of VM {machine['vmid']}", reason, pause)
            await deps.gate.sleep(pause)
            waited += pause
            delay = min(delay * 2, 8.0)


async def _sweep(ctx: OpContext[MachineDeps]) -> None:
    sweep = _Sweep(ctx, dict(ctx.state.get("outcomes", {})), dict(ctx.state.get("errors", {})))
    async with asyncio.TaskGroup() as group:
        for machine in ctx.params["machines"]:
            group.create_task(_sweep_machine(sweep, machine, float(ctx.params["lock_wait_s"])))


# Forward-only: deleted checkpoints stay deleted; `ops resume` carries on where a crash stopped it.
APPLY = register(OperationKind("retention.apply", [Step("delete", _sweep)], resume="finish"))


@dataclass(frozen=True)
class PruneResult:
    plans: tuple[MachinePlan, ...]
    operation_id: str | None  # None for a dry run or when nothing was to be removed

    @property
    def items(self) -> list[PruneItem]:
        return [item for p in self.plans for item in p.items]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)


async def apply(
    deps: MachineDeps,
    plans: Sequence[MachinePlan],
    *,
    actor: str,
    lock_wait_s: float = 60.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> PruneResult:
    """Delete what ``plans`` remove; return the plans with each item's outcome."""
    chosen = [p for p in plans if p.skipped is None and p.to_remove]
    machines: list[dict[str, Any]] = [
        {"machine": p.machine, "machine_id": p.machine_id, "vmid": p.vmid, "node": p.node,
         "remove": [i.checkpoint for i in p.to_remove]}
        for p in chosen
    ]  # fmt: skip
    if not machines:
        return PruneResult(tuple(plans), None)
    params = {"machines": machines, "lock_wait_s": lock_wait_s}
    doomed = sum(len(p.to_remove) for p in chosen)
    scope = sorted({_project_of(deps, p.machine_id) for p in chosen})
    async with deps.security.guard(
        deps.identity,
        "retention.apply",
        target=f"{doomed} checkpoint(s) of {len(machines)} machine(s)",
        project=scope[0] if len(scope) == 1 else None,
        subject=Subject("retention.apply", count=len(machines)),
        params={"remove": {p.machine: [i.checkpoint for i in p.to_remove] for p in chosen}},
    ):
        record = await Runner(Journal(deps.db), deps).run(APPLY, params, actor=actor, progress=progress)
    return PruneResult(tuple(_with_outcomes(p, record) for p in plans), record.id)


def _project_of(deps: MachineDeps, machine_id: int) -> str:
    with deps.db.session() as session:
        return session.get_one(Machine, machine_id).project.name


def _with_outcomes(machine_plan: MachinePlan, record: OperationRecord) -> MachinePlan:
    outcomes: dict[str, str] = record.state.get("outcomes", {})
    errors: dict[str, str] = record.state.get("errors", {})
    items = []
    for item in machine_plan.items:
        key = f"{machine_plan.vmid}/{item.checkpoint}"
        if item.keep:
            items.append(item.model_copy(update={"outcome": "kept"}))
        else:
            outcome = outcomes.get(key, "deferred")
            items.append(item.model_copy(update={"outcome": outcome, "error": errors.get(key)}))
    return machine_plan.model_copy(update={"items": tuple(items)})
