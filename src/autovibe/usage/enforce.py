"""Graduated quota enforcement, one pass at a time (``hub tick`` runs it after sampling).

For each project with quotas: compute its level (see :mod:`autovibe.usage.quotas`), compare it with the
level recorded at the previous pass, and act:

- a change of level is recorded as an enforcement event and sent as an alert (warn, throttle,
  emergency, or the throttle lifting when usage falls back);
- at ``throttle`` and ``emergency`` new machines are refused (:func:`quotas.check_create`, live);
- at ``emergency`` every running non-critical machine of the project is stopped, lowest priority
  first, machines labelled ``critical`` never, as one journaled operation (``quota.emergency_stop``),
  and again at later passes if someone starts one while the project is still that far over.

``dry_run`` computes the same actions and changes nothing.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import MachineNotFound
from autovibe.machines.models import PRIORITIES, is_critical, priority_of
from autovibe.operations.journal import Journal
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.store.tables import EnforcementEvent, Machine, ProjectEnforcement
from autovibe.usage.alerts import Alert, Dispatcher
from autovibe.usage.quotas import LEVELS, METRICS, Level, ProjectStatus, status

Severity = Literal["info", "warning", "critical"]
_SEVERITY: dict[Level, Severity] = {
    "ok": "info",
    "warn": "warning",
    "throttle": "warning",
    "emergency": "critical",
}


class EnforcementAction(BaseModel):
    """What a pass did (or, in a dry run, would do) for one project."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    previous: Level
    level: Level
    message: str
    stop: tuple[str, ...] = ()  # machines stopped (to stop, in a dry run)
    spared: tuple[str, ...] = ()  # running machines left alone because they are critical
    operation_id: str | None = None


def _describe(current: ProjectStatus, previous: Level) -> str:
    breach = current.breach()
    if breach is None:
        return (
            f"project '{current.project}' is back within its quotas: new machines are allowed again"
            if previous in ("throttle", "emergency")
            else f"project '{current.project}' is within its quotas"
        )
    over = (
        f"{breach.percent - 100:.0f}% over its {METRICS[breach.metric]} quota "
        f"({breach.usage:.2f} of {breach.limit:g} this {breach.period})"
    )
    return {
        "warn": f"project '{current.project}' is {over}",
        "throttle": f"project '{current.project}' is {over}: new machines are refused",
        "emergency": f"project '{current.project}' is {over}: stopping its non-critical machines",
    }.get(current.level, f"project '{current.project}' is {over}")


def _targets(deps: MachineDeps, project_id: int, running: set[int]) -> tuple[list[str], list[str]]:
    """Running machines to stop (lowest priority first, then by name) and the critical ones spared."""
    with deps.db.session() as session:
        rows = [
            (m.name, {str(k): str(v) for k, v in m.labels.items()})
            for m in session.scalars(select(Machine).where(Machine.project_id == project_id))
            if m.vmid in running
        ]
    spared = sorted(name for name, labels in rows if is_critical(labels))
    doomed = sorted(
        (PRIORITIES.index(priority_of(labels)), name) for name, labels in rows if not is_critical(labels)
    )
    return [name for _, name in doomed], spared


async def _stop_machines(ctx: OpContext[MachineDeps]) -> None:
    """Stop each machine in turn (lowest priority first); remembers progress for `ops resume`."""
    done = list(ctx.state.get("stopped", []))
    for name in ctx.params["machines"]:
        if name in done:
            continue
        with contextlib.suppress(MachineNotFound):  # deleted meanwhile: nothing left to stop
            await machines.power(ctx.deps, name, "stop")
        done.append(name)
        ctx.remember(stopped=done)


EMERGENCY_STOP = register(
    OperationKind("quota.emergency_stop", [Step("stop", _stop_machines)], resume="finish")
)


async def enforce(
    deps: MachineDeps,
    *,
    dispatcher: Dispatcher,
    actor: str,
    dry_run: bool = False,
    running: set[int] | None = None,
) -> list[EnforcementAction]:
    """One enforcement pass over every project that has quotas. ``running`` (vmids), when the caller
    has just sampled, saves reading the cluster again."""
    now = deps.now()
    if running is None:
        running = await _running(deps)
    actions = []
    for current in status(deps.db, now=now):
        action = await _enforce(deps, current, running, dispatcher=dispatcher, actor=actor, dry_run=dry_run)
        if action is not None:
            actions.append(action)
    return actions


class EnforceReport(BaseModel):
    """One project's enforcement: its level before (as last recorded) and now, and the ``action`` taken
    (in a dry run: that would be taken), or ``null`` when its level did not change and nothing is to be
    stopped."""

    project: str
    dry_run: bool
    at: datetime
    previous: Level
    level: Level
    action: EnforcementAction | None = None


async def enforce_project(
    deps: MachineDeps, project: str, *, dispatcher: Dispatcher, actor: str, dry_run: bool = False
) -> EnforceReport:
    """The pass's enforcement for one project (the hub's ``quota enforce``), at ``deps.now()``."""
    now = deps.now()
    [current] = status(deps.db, now=now, project=project)
    previous = _recorded_level(deps, current.project_id)
    running = await _running(deps) if current.level == "emergency" else set()
    action = await _enforce(deps, current, running, dispatcher=dispatcher, actor=actor, dry_run=dry_run)
    return EnforceReport(
        project=current.project,
        dry_run=dry_run,
        at=now,
        previous=previous,
        level=current.level,
        action=action,
    )


async def _running(deps: MachineDeps) -> set[int]:
    resources = await deps.pve.cluster_resources(type="vm")
    return {int(r.vmid) for r in resources if r.vmid is not None and r.status == "running"}


async def _enforce(
    deps: MachineDeps,
    current: ProjectStatus,
    running: set[int],
    *,
    dispatcher: Dispatcher,
    actor: str,
    dry_run: bool,
) -> EnforcementAction | None:
    if not current.quotas:
        return None
    previous = _recorded_level(deps, current.project_id)
    doomed, spared = _targets(deps, current.project_id, running) if current.level == "emergency" else ([], [])
    if current.level == previous and not doomed:
        return None
    action = EnforcementAction(
        project=current.project, previous=previous, level=current.level,
        message=_describe(current, previous), stop=tuple(doomed), spared=tuple(spared),
    )  # fmt: skip
    if dry_run:
        return action
    return await _act(deps, current, action, dispatcher=dispatcher, actor=actor, now=deps.now())


def _recorded_level(deps: MachineDeps, project_id: int) -> Level:
    with deps.db.session() as session:
        row = session.get(ProjectEnforcement, project_id)
        level = row.level if row is not None else "ok"
    return level if level in LEVELS else "ok"


async def _act(
    deps: MachineDeps,
    current: ProjectStatus,
    action: EnforcementAction,
    *,
    dispatcher: Dispatcher,
    actor: str,
    now: datetime,
) -> EnforcementAction:
    operation_id = None
    if action.stop:
        record = await Runner(Journal(deps.db), deps).run(
            EMERGENCY_STOP, {"project": current.project, "machines": list(action.stop)}, actor=actor
        )
        operation_id = record.id
        action = action.model_copy(update={"operation_id": operation_id})
    details: dict[str, Any] = {
        "level": current.level,
        "previous": action.previous,
        "quotas": [q.model_dump(mode="json") for q in current.quotas],
        "stopped": list(action.stop),
        "spared": list(action.spared),
    }
    with deps.db.session() as session:
        row = session.get(ProjectEnforcement, current.project_id)
        if row is None:
            row = ProjectEnforcement(project_id=current.project_id, level=current.level, since=now)
            session.add(row)
        elif row.level != current.level:
            row.level, row.since = current.level, now
        row.detail = details
        session.add(
            EnforcementEvent(
                project_id=current.project_id,
                at=now,
                kind=_kind(action),
                message=action.message,
                details=details,
                operation_id=operation_id,
            )
        )
    await dispatcher.send(
        Alert(
            kind=_kind(action),
            severity=_SEVERITY[current.level],
            project=current.project,
            machine=None,
            message=action.message,
            details=details,
            at=now,
        )
    )
    return action


def _kind(action: EnforcementAction) -> str:
    """``quota.warn``, ``quota.throttle``, ``quota.emergency_stop`` or ``quota.cleared``."""
    return {"ok": "quota.cleared", "emergency": "quota.emergency_stop"}.get(
        action.level, f"quota.{action.level}"
    )
