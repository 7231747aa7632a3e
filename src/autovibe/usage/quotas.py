"""Project quotas and where a project stands against them.

A quota caps one usage figure over a calendar period in UTC (``day``, ``week`` = ISO week, ``month``).
The level follows the graduated rule: at or under quota ``ok``; under 10% over ``warn``; 10% up to 50%
over ``throttle`` (no new machines in the project); 50% or more over ``emergency`` (its non-critical
machines are stopped). A project's level is its worst quota's.

Figures: ``cpu_core_hours`` (integral of cpu x cores dt), ``mem_gib_hours`` (integral of memory in
use dt), ``net_gb`` (decimal GB in + out) over the period, and ``storage_gib`` (what the project's
machines occupy now: disks, snapshots, RAM states; a level, not a sum over time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autovibe.errors import AutovibeDenied, AutovibeInvalid
from autovibe.machines.errors import ProjectNotFound
from autovibe.security import rbac
from autovibe.security.gate import Gate
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.security.risk import Subject
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.tables import Machine, Project, ProjectQuota, UsageHourly, UsageSeries
from autovibe.usage.sampler import series_key

Level = Literal["ok", "warn", "throttle", "emergency"]
LEVELS: Final[tuple[Level, ...]] = ("ok", "warn", "throttle", "emergency")
Period = Literal["day", "week", "month"]
PERIODS: Final[tuple[str, ...]] = ("day", "week", "month")
METRICS: Final[dict[str, str]] = {
    "cpu_core_hours": "CPU core-hours",
    "mem_gib_hours": "memory GiB-hours",
    "net_gb": "network GB (in + out)",
    "storage_gib": "storage GiB (disks, snapshots, RAM states)",
}
WARN_UNDER: Final = 0.10  # over by less than this: warn
EMERGENCY_FROM: Final = 0.50  # over by this or more: emergency stop
GIB: Final = 1024**3


class QuotaInvalid(AutovibeInvalid, ValueError):
    """A bad quota: unknown metric or period, or a limit that is not positive."""


class QuotaThrottled(AutovibeDenied):
    """The project is 10% or more over a quota: new machines are refused."""


def level_for(usage: float, limit: float) -> Level:
    """The enforcement level of ``usage`` against a positive ``limit``."""
    if usage <= limit:
        return "ok"
    over = usage / limit - 1
    if over < WARN_UNDER:
        return "warn"
    return "throttle" if over < EMERGENCY_FROM else "emergency"


def worst(levels: list[Level]) -> Level:
    return max(levels, key=LEVELS.index, default="ok")


def period_start(now: datetime, period: str) -> datetime:
    """The start (UTC) of the calendar period ``now`` falls in."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period == "month":
        return day.replace(day=1)
    raise QuotaInvalid(f"unknown period '{period}': use one of {', '.join(PERIODS)}")


class QuotaStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    limit: float
    period: str
    since: datetime
    usage: float
    level: Level

    @property
    def percent(self) -> float:
        """Usage as a percentage of the limit (150.0 = 50% over)."""
        return 100.0 * self.usage / self.limit


class ProjectStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    project_id: int
    level: Level
    quotas: tuple[QuotaStatus, ...] = ()

    def breach(self) -> QuotaStatus | None:
        """The quota furthest over (what a message should name), if any is over."""
        over = [q for q in self.quotas if q.level != "ok"]
        return max(over, key=lambda q: q.usage / q.limit, default=None)


def usage_since(session: Session, project_id: int, since: datetime) -> dict[str, float]:
    """The project's figures from ``since`` (an hour boundary) until now, and its storage now."""
    row = session.execute(
        select(
            func.coalesce(func.sum(UsageHourly.cpu_core_hours), 0.0),
            func.coalesce(func.sum(UsageHourly.mem_gib_hours), 0.0),
            func.coalesce(func.sum(UsageHourly.net_in_bytes + UsageHourly.net_out_bytes), 0),
        ).where(UsageHourly.project_id == project_id, UsageHourly.hour >= since)
    ).one()
    return {
        "cpu_core_hours": float(row[0]),
        "mem_gib_hours": float(row[1]),
        "net_gb": float(row[2]) / 1e9,
        "storage_gib": storage_gib(session, project_id),
    }


def storage_gib(session: Session, project_id: int) -> float:
    """Storage the project's existing machines occupy, from the latest storage measurement."""
    live = {series_key(m) for m in session.scalars(select(Machine).where(Machine.project_id == project_id))}
    if not live:
        return 0.0
    total = session.scalar(
        select(func.coalesce(func.sum(UsageSeries.storage_bytes), 0)).where(UsageSeries.series.in_(live))
    )
    return float(total or 0) / GIB


def _status(session: Session, project: Project, now: datetime) -> ProjectStatus:
    quotas = list(session.scalars(select(ProjectQuota).where(ProjectQuota.project_id == project.id)))
    found: list[QuotaStatus] = []
    cache: dict[datetime, dict[str, float]] = {}
    for quota in sorted(quotas, key=lambda q: list(METRICS).index(q.metric)):
        since = period_start(now, quota.period)
        figures = cache.get(since) or cache.setdefault(since, usage_since(session, project.id, since))
        used = figures[quota.metric]
        found.append(
            QuotaStatus(
                metric=quota.metric,
                limit=quota.limit,
                period=quota.period,
                since=since,
                usage=used,
                level=level_for(used, quota.limit),
            )
        )
    return ProjectStatus(
        project=project.name,
        project_id=project.id,
        level=worst([q.level for q in found]),
        quotas=tuple(found),
    )


def status(
    db: Database, *, now: datetime, project: str | None = None, identity: Identity = LOCAL_ADMIN
) -> list[ProjectStatus]:
    """Where each project (or one) stands against its quotas right now; only the projects ``identity``
    may read quotas of."""
    if project is not None:
        rbac.check(identity, "quota.read", project)
    with db.session() as session:
        if project is not None:
            found = repo.project_by_name(session, project)
            if found is None:
                raise ProjectNotFound(
                    f"no project '{project}'", hint="list projects with `autovibe project list`"
                )
            projects = [found]
        else:
            projects = [p for p in repo.projects(session) if rbac.can(identity, "quota.read", p.name)]
        return [_status(session, p, now) for p in projects]


def set_quota(
    db: Database,
    project: str,
    metric: str,
    limit: float,
    period: str = "month",
    *,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
    approval: str | None = None,
) -> None:
    if metric not in METRICS:
        raise QuotaInvalid(f"unknown quota metric '{metric}': use one of {', '.join(METRICS)}")
    if period not in PERIODS:
        raise QuotaInvalid(f"unknown period '{period}': use one of {', '.join(PERIODS)}")
    if not limit > 0:
        raise QuotaInvalid(f"a {METRICS[metric]} quota must be more than 0 (got {limit:g})")
    with db.session() as session:
        found = repo.project_by_name(session, project)
        if found is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint="list projects with `autovibe project list`"
            )
        project_id = found.id
        row = session.scalars(
            select(ProjectQuota).where(ProjectQuota.project_id == project_id, ProjectQuota.metric == metric)
        ).one_or_none()
        factor = float(limit) / row.limit if row is not None and row.limit else 1.0
    with (
        (security or Gate(db)).guard_sync(
            identity,
            "quota.set",
            target=f"{metric} quota of project {project}",
            project=project,
            subject=Subject("quota.set", details={"quota_factor": round(factor, 2)}),
            params={"metric": metric, "limit": limit, "period": period},
            approval=approval,
        ),
        db.session() as session,
    ):
        row = session.scalars(
            select(ProjectQuota).where(ProjectQuota.project_id == project_id, ProjectQuota.metric == metric)
        ).one_or_none()
        if row is None:
            row = ProjectQuota(project_id=project_id, metric=metric)
            session.add(row)
        row.limit, row.period = float(limit), period


def unset_quota(
    db: Database,
    project: str,
    metric: str | None = None,
    *,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> int:
    """Remove one quota of the project, or all of them; returns how many were removed."""
    if metric is not None and metric not in METRICS:
        raise QuotaInvalid(f"unknown quota metric '{metric}': use one of {', '.join(METRICS)}")
    with db.session() as session:
        found = repo.project_by_name(session, project)
        if found is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint="list projects with `autovibe project list`"
            )
        project_id = found.id
    with (
        (security or Gate(db)).guard_sync(
            identity,
            "quota.set",
            target=f"quotas of project {project}",
            project=project,
            subject=Subject(
                "quota.set", details={"quota_factor": 10.0}
            ),  # lifting a cap: as loose as it gets
            params={"unset": metric or "all"},
        ),
        db.session() as session,
    ):
        rows = [
            q
            for q in session.scalars(select(ProjectQuota).where(ProjectQuota.project_id == project_id))
            if metric is None or q.metric == metric
        ]
        for row in rows:
            session.delete(row)
        return len(rows)


def check_create(db: Database, project: str, *, now: datetime) -> None:
    """Refuse new machines in a project at throttle or emergency level (computed now, so raising the
    quota lifts the throttle at once)."""
    with db.session() as session:
        found = repo.project_by_name(session, project)
        if found is None:
            return  # the deploy's own validation names the missing project
        current = _status(session, found, now)
    breach = current.breach()
    if current.level in ("throttle", "emergency") and breach is not None:
        raise QuotaThrottled(
            f"project '{project}' is {breach.percent - 100:.0f}% over its {METRICS[breach.metric]} quota "
            f"({breach.usage:.2f} of {breach.limit:g} this {breach.period}): new machines are refused",
            hint=f"raise the quota (`autovibe quota set {project} ...`) or wait for the next {breach.period}",
        )
