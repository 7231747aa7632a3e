"""The usage part of ``autovibe demo``: a runaway machine, the hub's usage passes, and a quota enforced.

Runs on the demo's sandbox (``Connection.sandbox``): one machine is given the simulator's ``runaway``
load profile, and the sandbox's simulated clock is stepped four minutes before each usage pass, so hours
of usage take a moment. Alerts are collected and shown, never sent: the demo leaves the user's webhook
alone.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from autovibe.cli import render

if TYPE_CHECKING:
    from autovibe.composition import Connection
    from autovibe.machines.deploy import MachineDeps
    from autovibe.settings import Settings
    from autovibe.sim.app import SimApp
    from autovibe.usage.alerts import Alert, Dispatcher
    from autovibe.usage.service import TickReport

STEP_S = 240  # simulated seconds between usage passes (under the default usage.max_gap_s, 300)
WARM_UP_PASSES = 30  # two simulated hours of samples before the quota is set
MAX_PASSES = 200


class Inbox:
    """Collects the alerts a pass sends, to show them as lines."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def usage_tour(
    connection: Connection, deps: MachineDeps, settings: Settings, *, runaway: str, project: str, first: int
) -> int:
    """Steps ``first``.. of the tour; returns the number of the next step."""
    from autovibe.composition import on_target_clock
    from autovibe.machines import service as machines
    from autovibe.usage.alerts import Dispatcher

    assert connection.sandbox is not None, "the usage tour needs the demo's sandbox"
    sim = connection.sandbox
    metered = on_target_clock(deps, connection.clock)
    inbox = Inbox()
    dispatcher = Dispatcher([inbox])

    render.step(first, "Two more machines: 'keeper' labelled critical=true and 'batch' labelled priority=low")
    with render.progress("deploy keeper and batch"):
        await asyncio.gather(
            _deploy(deps, "keeper", project, {"critical": "true"}),
            _deploy(deps, "batch", project, {"priority": "low"}),
        )
    _clear_of_month_end(sim)
    render.step(
        first + 1,
        f"'{runaway}' runs away (100% CPU); the hub samples every machine each 4 minutes for 2 hours",
    )
    sim.set_load(machines.find(deps, runaway).vmid, "runaway")
    for _ in range(WARM_UP_PASSES + 1):
        await _pass(metered, settings, dispatcher, sim)
    await _show_usage(metered, project, metered.now())

    return await _quota_walk(metered, settings, dispatcher, inbox, sim, project=project, first=first + 2)


async def _deploy(deps: MachineDeps, name: str, project: str, labels: dict[str, str]) -> None:
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines import fleet
    from autovibe.machines.models import MachineCreate, parse_request
    from autovibe.machines.profiles import SEED_PROFILES

    request = parse_request(
        MachineCreate,
        {"name": name, "profile": "claude_code", "project": project, "labels": labels, "full_clone": False},
    )
    [outcome] = (await fleet.deploy(deps, request, SEED_PROFILES, actor=LOCAL_ACTOR)).outcomes
    if outcome.status != "deployed":
        raise RuntimeError(f"the demo could not deploy '{name}': {outcome.error}")


def _clear_of_month_end(sim: SimApp) -> None:
    """Quotas add up per month: start the walk far enough from a month's end that it stays in one."""
    now = datetime.fromtimestamp(sim.clock.now(), UTC)
    next_month = (now.replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    if next_month - now < timedelta(hours=12):
        sim.clock.advance((next_month - now).total_seconds() + 3600)


async def _pass(deps: MachineDeps, settings: Settings, dispatcher: Dispatcher, sim: SimApp) -> TickReport:
    """Four simulated minutes later, one usage pass (as `autovibe hub tick` runs it)."""
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines.profiles import SEED_PROFILES
    from autovibe.usage import service

    sim.clock.advance(STEP_S)
    return await service.tick(deps, settings.usage, SEED_PROFILES, dispatcher, actor=LOCAL_ACTOR)


async def _show_usage(deps: MachineDeps, project: str, now: datetime) -> None:
    from autovibe.usage import service

    from .usage import parse_since, usage_table

    since = parse_since(None, now)
    rows = service.report(deps.db, since=since, until=now, project=project, by="machine")
    render.table(usage_table(rows, since=since, until=now, by="machine"))


async def _quota_walk(
    deps: MachineDeps,
    settings: Settings,
    dispatcher: Dispatcher,
    inbox: Inbox,
    sim: SimApp,
    *,
    project: str,
    first: int,
) -> int:
    """Set a quota just above today's usage and run passes until the emergency stop; then raise it."""
    import math

    from autovibe.machines import service as machines
    from autovibe.usage import quotas
    from autovibe.usage import service as usage

    from .machine import machines_table
    from .quota import quota_table
    from .usage import parse_since

    now = deps.now()
    [row] = usage.report(deps.db, since=parse_since(None, now), until=now, project=project)
    limit = float(math.ceil(row.cpu_core_hours + 0.5))
    render.step(first, f"A quota of {limit:g} CPU core-hours this month; the hub enforces it at every pass")
    render.line(
        "the rule: over by under 10% warn; 10% or more throttle (no new machines); "
        "50% or more stop the non-critical machines, lowest priority first"
    )
    quotas.set_quota(deps.db, project, "cpu_core_hours", limit, "month")
    for _ in range(MAX_PASSES):
        report = await _pass(deps, settings, dispatcher, sim)
        for action in report.enforcement:
            render.line(f"{report.at:%H:%M}  {action.level:<9} {action.message}", style=_style(action.level))
            if action.level == "throttle":
                await _try_create(deps, project)
            if action.stop:
                render.line(f"          stopped, lowest priority first: {', '.join(action.stop)}")
                render.line(f"          spared (critical): {', '.join(action.spared) or '-'}")
        if any(a.level == "emergency" for a in report.enforcement):
            break
    render.line(f"alerts sent: {', '.join(alert.kind for alert in inbox.alerts)}")
    render.table(machines_table(await machines.list_machines(deps, project=project)))

    render.step(first + 1, "Raise the quota: the throttle lifts at once; the next pass finds it within quota")
    quotas.set_quota(deps.db, project, "cpu_core_hours", limit * 10, "month")
    quotas.check_create(deps.db, project, now=deps.now())  # what the deploy's quota step asks
    render.line(f"quota {limit * 10:g} core-hours: a new machine in '{project}' is allowed again")
    report = await _pass(deps, settings, dispatcher, sim)
    for action in report.enforcement:
        render.line(f"{report.at:%H:%M}  {action.level:<9} {action.message}", style=_style(action.level))
    render.table(quota_table(quotas.status(deps.db, now=deps.now(), project=project)))
    return first + 2


async def _try_create(deps: MachineDeps, project: str) -> None:
    """Ask for one more machine as `autovibe machine create` does: the deploy's quota step refuses it."""
    from autovibe.usage.quotas import QuotaThrottled

    try:
        await _deploy(deps, "one-more", project, {})
    except QuotaThrottled as exc:
        render.line(f"          machine create 'one-more' → refused: {exc.message}")
        return
    render.line("          machine create 'one-more' → deployed")


def _style(level: str) -> str:
    from .quota import LEVEL_STYLES

    return LEVEL_STYLES.get(level, "")
