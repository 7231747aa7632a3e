"""Per-machine limits and idle auto-stop on the simulator, in simulated time."""

from __future__ import annotations

import pytest

from autovibe.checkpoints import service as checkpoints
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import Profile, load_profiles
from autovibe.operations.journal import Journal
from autovibe.settings import UsageSettings
from autovibe.sim.app import SimApp
from autovibe.usage import limits, service
from autovibe.usage.alerts import Dispatcher
from tests.integration.usage.test_enforcement import Inbox, deploy

CONFIG = UsageSettings()


async def passes(
    deps: MachineDeps, sim: SimApp, count: int, inbox: Inbox, profiles: dict[str, Profile] | None = None
) -> list[str]:
    stopped: list[str] = []
    for _ in range(count):
        report = await service.tick(
            deps, CONFIG, profiles or load_profiles({}), Dispatcher([inbox]), actor="hub"
        )
        stopped += report.idle_stopped
        sim.clock.advance(60)
    return stopped


async def test_violations_open_with_a_peak_and_close(guarded: MachineDeps, stepped_sim: SimApp) -> None:
    deps = guarded
    vmid = await deploy(deps, "agent")
    limits.set_limits(deps, "agent", max_cpu_pct=80, max_mem_pct=90)
    stepped_sim.cluster.set_load(vmid, "runaway", stepped_sim.clock.now())
    inbox = Inbox()
    await passes(deps, stepped_sim, 12, inbox)
    stepped_sim.cluster.set_load(vmid, "idle", stepped_sim.clock.now())
    await passes(deps, stepped_sim, 2, inbox)

    shown = limits.show(deps, "agent")
    kinds = {v.kind: v for v in shown.violations}
    assert set(kinds) == {"cpu", "mem"}
    assert kinds["cpu"].peak == 100 and kinds["cpu"].limit == 80 and kinds["cpu"].ended_at is not None
    assert kinds["mem"].peak == pytest.approx(95, abs=0.5)
    assert [a.kind for a in inbox.alerts] == ["limit.violation", "limit.violation"]  # once each, not per pass


async def test_bad_limits_are_refused(guarded: MachineDeps) -> None:
    with pytest.raises(limits.LimitsInvalid, match="between 0 and 100"):
        limits.set_limits(guarded, "nope", max_cpu_pct=150)  # refused before the lookup
    await deploy(guarded, "agent")
    with pytest.raises(limits.LimitsInvalid, match="needs both"):
        limits.set_limits(guarded, "agent", idle_cpu_pct=5)
    limits.set_limits(guarded, "agent", idle_for_s=600, idle_cpu_pct=5)
    limits.set_limits(guarded, "agent", idle_cpu_pct=3)  # the other half is already set
    assert limits.show(guarded, "agent").idle_cpu_pct == 3


async def test_an_idle_machine_is_stopped_after_a_checkpoint(
    guarded: MachineDeps, stepped_sim: SimApp
) -> None:
    deps = guarded
    profiles = load_profiles({"claude_code": {"checkpoint_before_idle_stop": True}})
    idle = await deploy(deps, "sleepy")
    busy = await deploy(deps, "busy")
    stepped_sim.cluster.set_load(idle, "idle", stepped_sim.clock.now())
    stepped_sim.cluster.set_load(busy, "steady", stepped_sim.clock.now())
    for name in ("sleepy", "busy"):
        limits.set_limits(deps, name, idle_cpu_pct=5, idle_for_s=900)

    stopped = await passes(deps, stepped_sim, 25, Inbox(), profiles=profiles)

    assert stopped == ["sleepy"]  # once: a stopped machine is not idle any more
    status = {m.name: m.status for m in await machines.list_machines(deps)}
    assert status == {"sleepy": "stopped", "busy": "running"}
    [taken] = (await checkpoints.tree(deps, "sleepy")).checkpoints
    assert taken.name.startswith("idle-") and taken.ram  # taken while it still ran
    kinds = [op.kind for op in Journal(deps.db).recent(limit=50)]
    assert kinds.count("usage.idle_stop") == 1
