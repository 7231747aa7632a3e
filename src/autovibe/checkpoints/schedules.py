"""Scheduled checkpoints: an interval per machine or per project, run by the hub's scheduler pass.

:func:`run_due` is one pass (``autovibe hub tick`` runs it now; the hub service will run it in its
loop): every schedule whose interval has passed takes a checkpoint of its machine, or of each machine
of its project (machines with a schedule of their own are left to that one), then prunes those machines
with their retention policy when the schedule says so. A machine's trouble is reported, never allowed
to stop the others; the schedule counts as run either way, so a broken machine is not hammered.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from autovibe.checkpoints import prune
from autovibe.checkpoints.errors import InvalidCheckpointRequest
from autovibe.checkpoints.service import create
from autovibe.errors import AutovibeError
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import MachineNotFound, ProjectNotFound
from autovibe.security.gate import Gate
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.tables import CheckpointSchedule, Machine, Project

MIN_EVERY = timedelta(minutes=5)
SCHEDULED_PREFIX = "auto"


class ScheduleRead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: str  # "project" or "machine"
    target: str
    every_s: int
    ram: bool
    prune: bool
    last_run_at: AwareDatetime | None
    next_due_at: AwareDatetime | None  # None: due now (never run)


class ScheduledRun(BaseModel):
    """What one schedule did to one machine in a pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    checkpoint: str | None = None
    removed: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    error: str | None = None


def _read(row: CheckpointSchedule, session: Session) -> ScheduleRead:
    if row.machine_id is not None:
        scope, target = "machine", session.get_one(Machine, row.machine_id).name
    else:
        scope, target = "project", session.get_one(Project, row.project_id).name
    due = row.last_run_at + timedelta(seconds=row.every_s) if row.last_run_at else None
    return ScheduleRead(
        scope=scope,
        target=target,
        every_s=row.every_s,
        ram=row.ram,
        prune=row.prune,
        last_run_at=row.last_run_at,
        next_due_at=due,
    )


def _owner(session: Session, *, project: str | None, machine: str | None) -> tuple[str, int]:
    if (project is None) == (machine is None):
        raise InvalidCheckpointRequest("give a machine or --project (exactly one)")
    if project is not None:
        found = repo.project_by_name(session, project)
        if found is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint="list projects with `autovibe project list`"
            )
        return "project_id", found.id
    assert machine is not None
    row = repo.machine_by_ref(session, machine)
    if row is None:
        raise MachineNotFound(f"no machine '{machine}'", hint="list machines with `autovibe machine list`")
    return "machine_id", row.id


def _scope_project(session: Session, *, project: str | None, machine: str | None) -> str | None:
    """The project a schedule acts in (checked by the gate); unknown names are left to ``_owner``."""
    if project is not None:
        return project
    if machine is None:
        return None
    row = repo.machine_by_ref(session, machine)
    return row.project.name if row is not None else None


def set_schedule(
    db: Database,
    *,
    every: timedelta,
    project: str | None = None,
    machine: str | None = None,
    ram: bool = True,
    prune: bool = True,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> ScheduleRead:
    """Create or replace the schedule of a machine or project."""
    if every < MIN_EVERY:
        raise InvalidCheckpointRequest(
            f"--every: at least {int(MIN_EVERY.total_seconds() // 60)} minutes between scheduled checkpoints"
        )
    with db.session() as session:
        scope = _scope_project(session, project=project, machine=machine)
    with (security or Gate(db)).guard_sync(
        identity, "schedule.set", target=f"checkpoint schedule of {project or machine}", project=scope,
        params={"every_s": int(every.total_seconds()), "ram": ram, "prune": prune},
    ), db.session() as session:  # fmt: skip
        column, owner_id = _owner(session, project=project, machine=machine)
        row = session.scalars(
            select(CheckpointSchedule).where(getattr(CheckpointSchedule, column) == owner_id)
        ).one_or_none()
        if row is None:
            row = CheckpointSchedule(**{column: owner_id})
            session.add(row)
        row.every_s, row.ram, row.prune = int(every.total_seconds()), ram, prune
        session.flush()
        return _read(row, session)


def remove_schedule(
    db: Database,
    *,
    project: str | None = None,
    machine: str | None = None,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> bool:
    """Remove the schedule; False when there was none."""
    with db.session() as session:
        scope = _scope_project(session, project=project, machine=machine)
    with (security or Gate(db)).guard_sync(
        identity, "schedule.set", target=f"checkpoint schedule of {project or machine}", project=scope,
        params={"remove": True},
    ), db.session() as session:  # fmt: skip
        column, owner_id = _owner(session, project=project, machine=machine)
        row = session.scalars(
            select(CheckpointSchedule).where(getattr(CheckpointSchedule, column) == owner_id)
        ).one_or_none()
        if row is None:
            return False
        session.delete(row)
        return True


def list_schedules(db: Database) -> list[ScheduleRead]:
    with db.session() as session:
        rows = session.scalars(select(CheckpointSchedule).order_by(CheckpointSchedule.id))
        return sorted((_read(r, session) for r in rows), key=lambda s: (s.scope, s.target))


def _due(deps: MachineDeps, now: datetime) -> list[tuple[int, bool, bool, list[str]]]:
    """Due schedules as (id, ram, prune, machine names), marked as run at ``now``."""
    due = []
    with deps.db.session() as session:
        rows = list(session.scalars(select(CheckpointSchedule).order_by(CheckpointSchedule.id)))
        own = {r.machine_id for r in rows if r.machine_id is not None}
        for row in rows:
            if row.last_run_at is not None and row.last_run_at + timedelta(seconds=row.every_s) > now:
                continue
            if row.machine_id is not None:
                names = [session.get_one(Machine, row.machine_id).name]
            else:
                project = session.get_one(Project, row.project_id)
                names = [m.name for m in repo.machines(session, project=project.name) if m.id not in own]
            row.last_run_at = now
            due.append((row.id, row.ram, row.prune, names))
    return due


async def run_due(deps: MachineDeps, *, actor: str) -> list[ScheduledRun]:
    """One scheduler pass: take every due checkpoint, then prune where the schedule asks for it."""
    runs = []
    for _, ram, wants_prune, names in _due(deps, deps.now()):
        for name in names:
            runs.append(await _run_one(deps, name, ram=ram, wants_prune=wants_prune, actor=actor))
    return runs


async def _run_one(deps: MachineDeps, name: str, *, ram: bool, wants_prune: bool, actor: str) -> ScheduledRun:
    try:
        created = await create(
            deps, name, ram=None if ram else False, description="scheduled by autovibe", actor=actor,
            prefix=SCHEDULED_PREFIX,
        )  # fmt: skip
        if not wants_prune:
            return ScheduledRun(machine=name, checkpoint=created.checkpoint.name)
        plans = [p for p in await prune.plan_prune(deps, machine=name) if p.skipped is None]
        result = await prune.apply(deps, plans, actor=actor)
    except AutovibeError as exc:  # PVE errors and failed operations alike
        return ScheduledRun(machine=name, error=str(exc))
    return ScheduledRun(
        machine=name,
        checkpoint=created.checkpoint.name,
        removed=tuple(i.checkpoint for i in result.items if i.outcome == "removed"),
        deferred=tuple(i.checkpoint for i in result.items if i.outcome == "deferred"),
    )
