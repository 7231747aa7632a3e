"""The usage pass on the simulator, in simulated time: sampling, hourly usage, and graduated quota
enforcement on a project with a runaway machine (warn -> throttle -> emergency stop -> lifted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.machines.profiles import load_profiles
from autovibe.operations.journal import Journal
from autovibe.pve import RequestObservation
from autovibe.settings import UsageSettings
from autovibe.sim.app import SimApp
from autovibe.store.tables import EnforcementEvent, UsageSample
from autovibe.usage import quotas, service
from autovibe.usage.alerts import Alert, Dispatcher
from autovibe.usage.metrics import DomainCollector, exposition, new_registry
from tests.integration.usage.test_metrics import check_metrics

PROFILES = load_profiles({})
CONFIG = UsageSettings()


class Inbox:
    """Where alerts land (stands in for the people and systems that receive them)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def deploy(deps: MachineDeps, name: str, **labels: str) -> int:
    request = parse_request(
        MachineCreate, {"name": name, "profile": "claude_code", "project": "alpha", "labels": labels}
    )
    [outcome] = (await fleet.deploy(deps, request, PROFILES, actor="t")).outcomes
    assert outcome.status == "deployed", outcome.error
    assert outcome.vmid is not None
    return outcome.vmid


async def test_one_request_per_sample_and_usage_adds_up(guarded: MachineDeps, stepped_sim: SimApp) -> None:
    deps = guarded
    for name in ("a", "b"):
        await deploy(deps, name)
    inbox = Inbox()
    seen: list[RequestObservation] = []
    deps.pve._observer = seen.append
    for index in range(61):
        seen.clear()
        report = await service.tick(deps, CONFIG, PROFILES, Dispatcher([inbox]), actor="hub")
        assert report.sampled == 2
        paths = [(o.method, o.path) for o in seen]
        storage = [p for p in paths if p[1].endswith("/content")]
        if index % 60:  # storage is measured at the first pass, then hourly
            assert paths == [("GET", "/cluster/resources")], paths
        else:  # one listing per storage instance holding images: 3 local x 2 + the shared one
            assert len(storage) == 7, paths
        stepped_sim.clock.advance(60)
    [a, b] = service.report(deps.db, since=deps.now().replace(hour=0), until=deps.now(), by="machine")
    assert b.machine == "b"
    assert a.machine == "a" and a.cpu_core_hours > 0 and a.mem_gib_hours > 0 and a.net_in_gb > 0
    assert 0.99 < a.covered_h < 1.01 and a.gap_h == 0
    with deps.db.session() as session:
        assert session.query(UsageSample).count() == 122


async def test_runaway_project_goes_warn_throttle_emergency_and_back(
    guarded: MachineDeps, stepped_sim: SimApp
) -> None:
    deps = guarded
    runaway = await deploy(deps, "runaway")
    await deploy(deps, "helper", priority="low")
    await deploy(deps, "keeper", critical="true")
    for vmid in stepped_sim.cluster.guests:
        if vmid >= 100:
            stepped_sim.cluster.set_load(vmid, "idle", stepped_sim.clock.now())
    stepped_sim.cluster.set_load(runaway, "runaway", stepped_sim.clock.now())
    quotas.set_quota(deps.db, "alpha", "cpu_core_hours", 0.5, "month")
    inbox = Inbox()
    levels: list[str] = []
    refused_while_throttled = False
    for _ in range(200):
        report = await service.tick(deps, CONFIG, PROFILES, Dispatcher([inbox]), actor="hub")
        levels += [a.level for a in report.enforcement]
        if levels and levels[-1] == "throttle" and not refused_while_throttled:
            with pytest.raises(quotas.QuotaThrottled, match="new machines are refused"):
                await deploy(deps, "more")
            refused_while_throttled = True
        if "emergency" in levels:
            break
        stepped_sim.clock.advance(30)

    assert levels == ["warn", "throttle", "emergency"]
    assert refused_while_throttled
    [stop] = [a for a in report.enforcement if a.level == "emergency"]
    assert stop.stop == ("helper", "runaway") and stop.spared == ("keeper",)  # lowest priority first
    status = {m.name: m.status for m in await machines.list_machines(deps)}
    assert status == {"runaway": "stopped", "helper": "stopped", "keeper": "running"}
    assert Journal(deps.db).get(stop.operation_id or "").kind == "quota.emergency_stop"
    assert [a.kind for a in inbox.alerts] == ["quota.warn", "quota.throttle", "quota.emergency_stop"]

    # Raising the quota lifts the throttle at once; the next pass records the project as within quota.
    quotas.set_quota(deps.db, "alpha", "cpu_core_hours", 100, "month")
    await deploy(deps, "more")
    lifted = await service.tick(deps, CONFIG, PROFILES, Dispatcher([inbox]), actor="hub")
    assert [(a.previous, a.level) for a in lifted.enforcement] == [("emergency", "ok")]
    assert inbox.alerts[-1].kind == "quota.cleared"
    with deps.db.session() as session:
        kinds = [e.kind for e in session.query(EnforcementEvent).order_by(EnforcementEvent.id)]
    assert kinds == ["quota.warn", "quota.throttle", "quota.emergency_stop", "quota.cleared"]


async def test_dry_run_decides_and_changes_nothing(guarded: MachineDeps, stepped_sim: SimApp) -> None:
    deps = guarded
    vmid = await deploy(deps, "runaway")
    stepped_sim.cluster.set_load(vmid, "runaway", stepped_sim.clock.now())
    quotas.set_quota(deps.db, "alpha", "cpu_core_hours", 100, "day")
    for _ in range(5):
        await service.tick(deps, CONFIG, PROFILES, Dispatcher([]), actor="hub", dry_run=True)
        stepped_sim.clock.advance(120)
    with deps.db.session() as session:
        assert session.query(UsageSample).count() == 5  # measuring is not enforcing
    for _ in range(5):
        await service.tick(deps, CONFIG, PROFILES, Dispatcher([]), actor="hub")
        stepped_sim.clock.advance(120)
    quotas.set_quota(deps.db, "alpha", "cpu_core_hours", 0.01, "day")
    dry = await service.tick(deps, CONFIG, PROFILES, Dispatcher([]), actor="hub", dry_run=True)
    [action] = dry.enforcement
    assert action.level == "emergency" and action.stop == ("runaway",) and action.operation_id is None
    assert {m.name: m.status for m in await machines.list_machines(deps)} == {"runaway": "running"}
    with deps.db.session() as session:
        assert session.query(EnforcementEvent).count() == 0


async def test_metric_figures_from_the_store_pass_promtool(
    guarded: MachineDeps, stepped_sim: SimApp, tmp_path: Path
) -> None:
    deps = guarded
    vmid = await deploy(deps, "runaway")
    await deploy(deps, "calm", critical="true")
    stepped_sim.cluster.set_load(vmid, "runaway", stepped_sim.clock.now())
    quotas.set_quota(deps.db, "alpha", "cpu_core_hours", 0.05, "day")
    for _ in range(4):
        await service.tick(deps, CONFIG, PROFILES, Dispatcher([]), actor="hub")
        stepped_sim.clock.advance(60)

    projects, states, operations = await service.metric_figures(deps)
    registry = new_registry()
    DomainCollector(registry).update(projects=projects, machines=states, operations=operations)
    text = exposition(registry)

    [alpha] = projects
    assert alpha.level == "emergency" and alpha.quota == {"cpu_core_hours": 0.05}
    assert alpha.usage["cpu_core_hours"] > 0.075
    assert states == {"running": 1, "stopped": 1}
    assert operations[("quota.emergency_stop", "completed")] == 1
    assert b'autovibe_project_quota{metric="cpu_core_hours",project="alpha"} 0.05' in text
    path = tmp_path / "metrics.prom"
    path.write_bytes(text)
    checked = check_metrics(path)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
