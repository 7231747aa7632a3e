"""One pass of the hub's scheduler: the periodic work nobody should have to start by hand.

In order: the usage pass (sample, limits, idle stops, quota enforcement) on the target's clock, the
due scheduled checkpoints (and their prunes), the network profiles' DNS refresh, then lease expiry.
A part that fails is reported and does not keep the later parts from running. ``autovibe hub tick``
runs one pass from the CLI; the hub's leader runs it every ``hub.tick_interval_s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from autovibe.checkpoints import schedules
from autovibe.checkpoints.schedules import ScheduledRun
from autovibe.composition import network_context, profiles
from autovibe.errors import AutovibeError
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.network import service as network
from autovibe.network.service import RefreshReport
from autovibe.operations.models import OperationRecord
from autovibe.security.gate import HUB
from autovibe.settings import Settings
from autovibe.usage import service as usage
from autovibe.usage.alerts import build_notifiers
from autovibe.usage.service import TickReport


@dataclass(frozen=True)
class TickOutcome:
    usage: TickReport | None
    usage_error: str | None
    scheduled: list[ScheduledRun] = field(default_factory=list)
    refreshed: RefreshReport | None = None
    expired: list[OperationRecord] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.usage_error is not None or any(r.error for r in self.scheduled)


async def usage_pass(
    settings: Settings,
    deps: MachineDeps,
    clock: Callable[[], float],
    *,
    dry_run: bool = False,
    actor: str = HUB.name,
) -> TickReport:
    """The usage pass, on the target's clock (the simulator's own time for the embedded one)."""
    metered = dataclasses.replace(deps, now=lambda: datetime.fromtimestamp(clock(), UTC))
    dispatcher = build_notifiers(settings.usage.webhook_url, settings.usage.webhook_secret)
    return await usage.tick(
        metered, settings.usage, profiles(settings), dispatcher, actor=actor, dry_run=dry_run
    )


async def run_pass(
    settings: Settings,
    deps: MachineDeps,
    clock: Callable[[], float],
    *,
    dry_run: bool = False,
    actor: str = HUB.name,
) -> TickOutcome:
    """One scheduler pass as the hub's system identity (roles checked and audited, never held for an
    approval). ``dry_run`` measures usage and decides, acts on nothing, and skips the other parts."""
    deps = dataclasses.replace(deps, identity=HUB)
    try:
        report, error = await usage_pass(settings, deps, clock, dry_run=dry_run, actor=actor), None
    except AutovibeError as exc:  # PVE or store trouble there must not hold up lease expiry
        report, error = None, exc.message
    if dry_run:
        return TickOutcome(report, error)
    # Checkpoints first: a machine whose lease ends in this pass still gets its due checkpoint.
    scheduled = await schedules.run_due(deps, actor=actor)
    try:
        refreshed = await network.refresh(deps, network_context(settings))
    except AutovibeError as exc:
        refreshed = network.RefreshReport((), (f"refresh failed: {exc.message}",))
    expired = await machines.expire_due(deps, profiles(settings), actor=actor)
    return TickOutcome(report, error, scheduled, refreshed, expired)
