"""The hub's usage pass and usage reports.

:func:`tick` is one pass (``autovibe hub tick`` runs it; the hub service will run it every cycle):
sample every managed machine with one PVE request, add the usage since the previous sample to the
hourly rows, measure storage when due, drop raw samples past their retention, check per-machine
limits, stop idle machines, and enforce project quotas. ``dry_run`` measures as usual (samples and
usage are recorded, so it judges the same figures) and decides, but acts on nothing: no violation
recorded, no alert sent, no machine stopped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import ProjectNotFound
from autovibe.machines.profiles import Profile
from autovibe.security import rbac
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.settings import UsageSettings
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.tables import Operation, Project, UsageHourly, UsageSeries
from autovibe.usage import enforce, limits, sampler
from autovibe.usage.alerts import Alert, Dispatcher
from autovibe.usage.metrics import ProjectFigures
from autovibe.usage.quotas import GIB, period_start, status, storage_gib, usage_since


class TickReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    dry_run: bool
    sampled: int
    storage_measured: bool = False
    violations: tuple[dict[str, Any], ...] = ()
    idle_stopped: tuple[str, ...] = ()
    enforcement: tuple[enforce.EnforcementAction, ...] = ()


async def tick(
    deps: MachineDeps,
    config: UsageSettings,
    profiles: Mapping[str, Profile],
    dispatcher: Dispatcher,
    *,
    actor: str,
    dry_run: bool = False,
) -> TickReport:
    now = deps.now()
    sampled = await sampler.read(deps, now=now)
    running = {s.vmid for s in sampled if s.sample.running}
    # Measuring is not enforcing: a dry run records usage too, so it judges the same figures a real
    # pass would, and only the actions (violations, alerts, stops) are left out.
    sampler.record(deps.db, sampled, max_gap_s=config.max_gap_s)
    measured = sampler.storage_due(deps.db, now=now, every_s=config.storage_every_s)
    if measured:
        await sampler.measure_storage(deps, now=now)
    sampler.prune_raw(deps.db, now=now, keep=timedelta(hours=config.raw_retention_h))
    opened: list[dict[str, Any]] = []
    if not dry_run:
        opened = limits.check(deps.db, sampled, now=now)
        for violation in opened:
            await dispatcher.send(_violation_alert(violation, now))
    idle = await limits.stop_idle(deps, profiles, max_gap_s=config.max_gap_s, actor=actor, dry_run=dry_run)
    actions = await enforce.enforce(
        deps, dispatcher=dispatcher, actor=actor, dry_run=dry_run, running=running
    )
    return TickReport(
        at=now,
        dry_run=dry_run,
        sampled=len(sampled),
        storage_measured=measured,
        violations=tuple(opened),
        idle_stopped=tuple(idle),
        enforcement=tuple(actions),
    )


def _violation_alert(violation: dict[str, Any], now: datetime) -> Alert:
    unit = {"cpu": "% CPU", "mem": "% memory", "uptime": " s uptime"}[violation["kind"]]
    return Alert(
        kind="limit.violation",
        severity="warning",
        project=None,
        machine=violation["machine"],
        message=f"machine '{violation['machine']}' is over its {violation['kind']} limit "
        f"({violation['value']:.0f}{unit}, limit {violation['limit']:g})",
        details=violation,
        at=now,
    )


# ---- reports -------------------------------------------------------------------------------------
class UsageRow(BaseModel):
    """Usage of a project (or of one machine) over a window; ``cpu_by_hour`` feeds a sparkline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    machine: str | None = None
    cpu_core_hours: float = 0.0
    mem_gib_hours: float = 0.0
    net_in_gb: float = 0.0
    net_out_gb: float = 0.0
    storage_gib: float = 0.0
    covered_h: float = 0.0
    gap_h: float = 0.0
    cpu_by_hour: list[float] = Field(default_factory=list)


def report(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    project: str | None = None,
    by: Literal["project", "machine"] = "project",
    identity: Identity = LOCAL_ADMIN,
) -> list[UsageRow]:
    """Usage between two instants (whole UTC hours), per project or per machine, from the hourly rows;
    only the projects ``identity`` may read usage of."""
    if project is not None:
        rbac.check(identity, "usage.read", project)
    first = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = max(1, int((until - first).total_seconds() // 3600) + 1)
    with db.session() as session:
        if project is not None and repo.project_by_name(session, project) is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint="list projects with `autovibe project list`"
            )
        names = {
            p.id: p.name for p in session.scalars(select(Project)) if rbac.can(identity, "usage.read", p.name)
        }
        query = select(UsageHourly).where(UsageHourly.hour >= first, UsageHourly.hour <= until)
        rows = list(session.scalars(query))
        storage = {pid: storage_gib(session, pid) for pid in names}
        series_storage = _series_storage(session) if by == "machine" else {}
    grouped: dict[tuple[str, str | None], list[UsageHourly]] = defaultdict(list)
    for row in rows:
        name = names.get(row.project_id)
        if name is not None and (project is None or name == project):
            grouped[(name, row.machine if by == "machine" else None)].append(row)
    if by == "project":
        for name in names.values():
            if (project is None or name == project) and (name, None) not in grouped:
                grouped[(name, None)] = []
    ids = {name: pid for pid, name in names.items()}
    out = []
    for (name, machine), items in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        spark = [0.0] * hours
        for item in items:
            index = int((item.hour - first).total_seconds() // 3600)
            if 0 <= index < hours:
                spark[index] += item.cpu_core_hours
        pid = ids.get(name, -1)
        out.append(
            UsageRow(
                project=name,
                machine=machine,
                cpu_core_hours=sum(i.cpu_core_hours for i in items),
                mem_gib_hours=sum(i.mem_gib_hours for i in items),
                net_in_gb=sum(i.net_in_bytes for i in items) / 1e9,
                net_out_gb=sum(i.net_out_bytes for i in items) / 1e9,
                storage_gib=series_storage.get(machine, 0.0) if machine else storage.get(pid, 0.0),
                covered_h=sum(i.covered_s for i in items) / 3600,
                gap_h=sum(i.gap_s for i in items) / 3600,
                cpu_by_hour=spark,
            )
        )
    return out


def _series_storage(session: Session) -> dict[str, float]:
    return {s.machine: (s.storage_bytes or 0) / GIB for s in session.scalars(select(UsageSeries))}


# ---- metrics -------------------------------------------------------------------------------------
async def metric_figures(
    deps: MachineDeps,
) -> tuple[list[ProjectFigures], dict[str, int], dict[tuple[str, str], int]]:
    """What the Prometheus exposition shows: each project's figures this month (and over each quota's
    own period), machines by live state (one cluster read), and operations by kind and outcome."""
    now = deps.now()
    month = period_start(now, "month")
    projects = []
    for current in status(deps.db, now=now):
        with deps.db.session() as session:
            figures = usage_since(session, current.project_id, month)
        for quota in current.quotas:  # a quota's figure is over its own period
            figures[quota.metric] = quota.usage
        projects.append(
            ProjectFigures(
                project=current.project,
                usage=figures,
                quota={q.metric: q.limit for q in current.quotas},
                level=current.level,
            )
        )
    states: dict[str, int] = defaultdict(int)
    for machine in await machines.list_machines(deps):
        states[machine.status] += 1
    with deps.db.session() as session:
        rows = session.execute(
            select(Operation.kind, Operation.status, func.count()).group_by(Operation.kind, Operation.status)
        )
        operations = {(str(kind), str(outcome)): int(count) for kind, outcome, count in rows}
    return projects, dict(states), operations
