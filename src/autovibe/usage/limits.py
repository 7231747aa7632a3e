"""Per-machine limits: max CPU %, max memory %, max uptime (recorded as violations), and idle auto-stop.

A violation opens when a sample goes over a limit and closes at the first sample back under it; its
``peak`` is the worst value seen. Idle auto-stop stops a running machine whose CPU stayed under
``idle_cpu_pct`` in every sample of the last ``idle_for_s`` seconds (the samples must cover that whole
window, and the machine must have been up that long), taking a checkpoint first when its profile asks
for one (``checkpoint_before_idle_stop``). The stop is a journaled operation (``usage.idle_stop``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from autovibe.checkpoints import service as checkpoints
from autovibe.errors import AutovibeInvalid
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import Profile
from autovibe.operations.journal import Journal
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.security import rbac
from autovibe.store.db import Database
from autovibe.store.tables import EnforcementEvent, LimitViolation, Machine, MachineLimits, UsageSample
from autovibe.usage.sampler import Sampled, series_key

FIELDS = ("max_cpu_pct", "max_mem_pct", "max_uptime_s", "idle_cpu_pct", "idle_for_s")


class LimitsInvalid(AutovibeInvalid, ValueError):
    """A bad limit (a percentage outside 0-100, a negative duration, half an idle rule)."""


class LimitsRead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    machine: str
    max_cpu_pct: float | None = None
    max_mem_pct: float | None = None
    max_uptime_s: int | None = None
    idle_cpu_pct: float | None = None
    idle_for_s: int | None = None
    violations: tuple[ViolationRead, ...] = ()


class ViolationRead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    limit: float
    peak: float
    started_at: datetime
    ended_at: datetime | None


LimitsRead.model_rebuild()


def _check(values: Mapping[str, float | int | None]) -> None:
    for key in ("max_cpu_pct", "max_mem_pct", "idle_cpu_pct"):
        value = values.get(key)
        if value is not None and not 0 < value <= 100:
            raise LimitsInvalid(f"{key}: a percentage between 0 and 100 (got {value:g})")
    for key in ("max_uptime_s", "idle_for_s"):
        value = values.get(key)
        if value is not None and value <= 0:
            raise LimitsInvalid(f"{key}: must be a positive duration")


def _check_idle_pair(values: Mapping[str, float | int | None]) -> None:
    if (values.get("idle_cpu_pct") is None) != (values.get("idle_for_s") is None):
        raise LimitsInvalid("idle auto-stop needs both idle_cpu_pct and idle_for_s")


def set_limits(deps: MachineDeps, ref: str, **values: float | int | None) -> LimitsRead:
    """Set (or, with ``None``, clear) the given limits of a machine; the others stay as they were."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise LimitsInvalid(f"unknown limit(s): {', '.join(sorted(unknown))}")
    _check(values)  # bad values are refused before the machine is even looked up
    row = machines.find(deps, ref)
    with deps.security.guard_sync(
        deps.identity, "limits.set", target=f"limits of machine {row.name}",
        project=machines.project_of(deps, row), params=dict(values),
    ), deps.db.session() as session:  # fmt: skip
        limits = session.get(MachineLimits, row.id) or MachineLimits(machine_id=row.id)
        merged = {key: getattr(limits, key) for key in FIELDS} | values
        _check_idle_pair(merged)
        for key, value in merged.items():
            setattr(limits, key, value)
        session.add(limits)
    return show(deps, ref)


def show(deps: MachineDeps, ref: str, *, recent: int = 10) -> LimitsRead:
    row = machines.find(deps, ref)
    rbac.check(deps.identity, "machine.read", machines.project_of(deps, row))
    with deps.db.session() as session:
        limits = session.get(MachineLimits, row.id)
        found = session.scalars(
            select(LimitViolation)
            .where(LimitViolation.machine_id == row.id)
            .order_by(LimitViolation.started_at.desc())
            .limit(recent)
        )
        violations = tuple(
            ViolationRead(
                kind=v.kind, limit=v.limit, peak=v.peak, started_at=v.started_at, ended_at=v.ended_at
            )
            for v in found
        )
        values = {key: getattr(limits, key) for key in FIELDS} if limits else {}
    return LimitsRead(machine=row.name, violations=violations, **values)


def _over(limits: MachineLimits, item: Sampled) -> dict[str, tuple[float, float]]:
    """kind -> (value, limit) for each limit this sample is over."""
    s, over = item.sample, {}
    if not s.running:
        return {}
    if limits.max_cpu_pct is not None and s.cpu * 100 > limits.max_cpu_pct:
        over["cpu"] = (s.cpu * 100, limits.max_cpu_pct)
    if limits.max_mem_pct is not None and item.maxmem and 100 * s.mem / item.maxmem > limits.max_mem_pct:
        over["mem"] = (100 * s.mem / item.maxmem, limits.max_mem_pct)
    if limits.max_uptime_s is not None and s.uptime > limits.max_uptime_s:
        over["uptime"] = (float(s.uptime), float(limits.max_uptime_s))
    return over


def check(db: Database, sampled: Sequence[Sampled], *, now: datetime) -> list[dict[str, Any]]:
    """Open, update and close violations from this cycle's samples; returns the newly opened ones."""
    opened: list[dict[str, Any]] = []
    by_id = {s.machine_id: s for s in sampled}
    with db.session() as session:
        all_limits = list(session.scalars(select(MachineLimits).where(MachineLimits.machine_id.in_(by_id))))
        open_rows = {
            (v.machine_id, v.kind): v
            for v in session.scalars(
                select(LimitViolation).where(
                    LimitViolation.machine_id.in_(by_id), LimitViolation.ended_at.is_(None)
                )
            )
        }
        for limits in all_limits:
            item = by_id[limits.machine_id]
            over = _over(limits, item)
            for kind in ("cpu", "mem", "uptime"):
                current = open_rows.get((limits.machine_id, kind))
                if kind in over:
                    value, limit = over[kind]
                    if current is None:
                        session.add(LimitViolation(machine_id=limits.machine_id, kind=kind, limit=limit,
                                                   peak=value, started_at=now))  # fmt: skip
                        opened.append({"machine": item.machine, "kind": kind, "value": value, "limit": limit})
                    else:
                        current.peak = max(current.peak, value)
                elif current is not None:
                    current.ended_at = now
    return opened


# ---- idle auto-stop ----------------------------------------------------------------------------------
def idle_machines(db: Database, *, now: datetime, max_gap_s: float) -> list[str]:
    """Running machines with an idle rule whose CPU stayed under it for the whole idle window."""
    idle = []
    with db.session() as session:
        rules = [
            (m, limits)
            for limits in session.scalars(select(MachineLimits).where(MachineLimits.idle_for_s.is_not(None)))
            for m in [session.get_one(Machine, limits.machine_id)]
        ]
        for machine, limits in rules:
            assert limits.idle_for_s is not None and limits.idle_cpu_pct is not None
            since = now - timedelta(seconds=limits.idle_for_s)
            samples = list(
                session.scalars(
                    select(UsageSample)
                    .where(UsageSample.series == series_key(machine), UsageSample.taken_at >= since)
                    .order_by(UsageSample.taken_at)
                )
            )
            if not samples or not samples[-1].running:
                continue
            covered = (samples[0].taken_at - since).total_seconds() <= max_gap_s
            up_long_enough = samples[-1].uptime >= limits.idle_for_s
            steady = all(s.running for s in samples) and all(
                (b.taken_at - a.taken_at).total_seconds() <= max_gap_s for a, b in itertools.pairwise(samples)
            )
            if (
                covered
                and up_long_enough
                and steady
                and all(s.cpu * 100 < limits.idle_cpu_pct for s in samples)
            ):
                idle.append(machine.name)
    return idle


async def _checkpoint_first(ctx: OpContext[MachineDeps]) -> None:
    if ctx.params["checkpoint"]:
        await checkpoints.create(
            ctx.deps,
            ctx.params["machine"],
            description="before idle stop",
            actor=ctx.params["actor"],
            prefix="idle",
        )


async def _stop(ctx: OpContext[MachineDeps]) -> None:
    await machines.power(ctx.deps, ctx.params["machine"], "stop")


IDLE_STOP = register(
    OperationKind(
        "usage.idle_stop", [Step("checkpoint", _checkpoint_first), Step("stop", _stop)], resume="finish"
    )
)


async def stop_idle(
    deps: MachineDeps, profiles: Mapping[str, Profile], *, max_gap_s: float, actor: str, dry_run: bool = False
) -> list[str]:
    """Stop every idle machine (after a checkpoint when its profile asks); returns their names."""
    now = deps.now()
    names = idle_machines(deps.db, now=now, max_gap_s=max_gap_s)
    if dry_run:
        return names
    for name in names:
        row = machines.find(deps, name)
        profile = profiles.get(row.profile)
        wants = bool(profile and profile.checkpoint_before_idle_stop)
        record = await Runner(Journal(deps.db), deps).run(
            IDLE_STOP, {"machine": name, "checkpoint": wants, "actor": actor}, actor=actor
        )
        with deps.db.session() as session:
            session.add(
                EnforcementEvent(
                    project_id=row.project_id,
                    at=now,
                    kind="machine.idle_stop",
                    message=f"machine '{name}' was idle and has been stopped",
                    details={"machine": name, "checkpoint": wants},
                    operation_id=record.id,
                )
            )
    return names
