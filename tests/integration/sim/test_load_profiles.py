"""Load profiles: usage of running guests follows a chosen shape, with counters that are exact integrals."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.sim.app import SimApp
from autovibe.sim.usage import COUNTERS, PROFILES, counters, rates
from tests.fakes.simulated import SimDriver

ADMIN = "https://pve1:8006/_sim/load"
MAXMEM = 4096 * 1024**2  # template 9000's memory, which its clones inherit


async def running_clone(driver: SimDriver, vmid: int, **config: str) -> None:
    await driver.clone(vmid)
    if config:
        await driver.call("PUT", f"/nodes/pve1/qemu/{vmid}/config", **config)
    await driver.ok("POST", f"/nodes/pve1/qemu/{vmid}/status/start")


async def current(driver: SimDriver, vmid: int) -> dict[str, Any]:
    result: dict[str, Any] = await driver.call("GET", f"/nodes/pve1/qemu/{vmid}/status/current")
    return result


def seconds_since(driver: SimDriver, at: float) -> float:
    return driver.sim.clock.now() - at


def started_at(driver: SimDriver, vmid: int) -> float:
    at = driver.sim.cluster.guests[vmid].started_at
    assert at is not None
    return at


async def sample(driver: SimDriver, vmid: int, *, seconds: int, step: int = 10) -> list[dict[str, Any]]:
    """Status every ``step`` simulated seconds, each with ``now`` and ``t``, the exact uptime."""
    boot = started_at(driver, vmid)
    rows = []
    for _ in range(seconds // step):
        driver.sim.clock.advance(step)
        now = driver.sim.clock.now()
        rows.append({**await current(driver, vmid), "now": now, "t": now - boot})
    return rows


def assert_counters_are_the_integral(rows: list[dict[str, Any]], profile: str, vmid: int) -> None:
    for before, after in itertools.pairwise(rows):
        assert all(after[c] >= before[c] for c in COUNTERS)
    for row in rows:
        truth = counters(profile, vmid, row["t"])
        assert {c: row[c] for c in COUNTERS} == {c: int(truth[c]) for c in COUNTERS}


# ---- the shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_counters_are_the_integrals_of_the_rates(profile: str) -> None:
    """counters() is what a consumer integrating rates() would get (midpoint rule, 0.5 s steps)."""
    for vmid in (100, 107, 4242):
        dt, total = 0.5, dict.fromkeys(COUNTERS, 0.0)
        for i in range(int(1800 / dt)):
            rate = rates(profile, vmid, (i + 0.5) * dt)
            for c in COUNTERS:
                total[c] += rate[c] * dt
        exact = counters(profile, vmid, 1800.0)
        assert counters(profile, vmid, 0.0) == dict.fromkeys(COUNTERS, 0.0)
        for c in COUNTERS:
            assert exact[c] == pytest.approx(total[c], rel=1e-4)


async def test_idle_is_quiet(driver: SimDriver) -> None:
    await driver.clone(100)
    driver.sim.set_load(100, "idle")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    rows = await sample(driver, 100, seconds=1200)
    assert all(0.01 <= r["cpu"] <= 0.02 for r in rows)
    assert {r["mem"] for r in rows} == {int(MAXMEM * 0.20)}
    assert rows[-1]["netin"] / rows[-1]["t"] < 1_000  # bytes/s
    assert_counters_are_the_integral(rows, "idle", 100)


async def test_steady_hovers_around_a_third(driver: SimDriver) -> None:
    await driver.clone(100)
    driver.sim.set_load(100, "steady")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    rows = await sample(driver, 100, seconds=1200)
    assert all(0.30 <= r["cpu"] <= 0.40 for r in rows)
    assert max(r["cpu"] for r in rows) - min(r["cpu"] for r in rows) > 0.05  # a wave, not a constant
    assert all(0.48 * MAXMEM <= r["mem"] <= 0.52 * MAXMEM for r in rows)
    assert 500_000 < rows[-1]["netin"] / rows[-1]["t"] < 2_000_000
    assert_counters_are_the_integral(rows, "steady", 100)


async def test_spiky_bursts_for_a_minute_every_ten(driver: SimDriver) -> None:
    await driver.clone(100)
    driver.sim.set_load(100, "spiky")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    rows = await sample(driver, 100, seconds=3000, step=5)
    bursting = [r for r in rows if r["cpu"] >= 0.9]
    assert all(r["cpu"] <= 0.12 for r in rows if r not in bursting)
    assert len(bursting) / len(rows) == pytest.approx(0.1, abs=0.01)
    starts = [round(r["t"]) for prev, r in itertools.pairwise(rows) if r in bursting and prev not in bursting]
    assert len(starts) == 5 and {b - a for a, b in itertools.pairwise(starts)} == {600}
    assert all(0.4 * MAXMEM <= r["mem"] <= 0.6 * MAXMEM for r in rows)
    assert_counters_are_the_integral(rows, "spiky", 100)


async def test_runaway_pins_the_cpu_and_fills_memory_in_ten_minutes(driver: SimDriver) -> None:
    await driver.clone(100)
    driver.sim.set_load(100, "runaway")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    rows = await sample(driver, 100, seconds=1200)
    assert all(r["cpu"] == 1.0 for r in rows)
    climbing = [r["mem"] for r in rows if r["t"] < 600]
    assert climbing == sorted(climbing) and climbing[0] < 0.4 * MAXMEM
    assert {r["mem"] for r in rows if r["t"] >= 600} == {int(MAXMEM * 0.95)}
    last = rows[-1]
    assert last["netin"] == int(50_000_000 * last["t"]) and last["netout"] == int(20_000_000 * last["t"])
    assert last["diskwrite"] == int(100_000_000 * last["t"])
    assert_counters_are_the_integral(rows, "runaway", 100)
    # Every view of the guest shows the same usage.
    now = await current(driver, 100)
    row = next(r for r in await driver.call("GET", "/cluster/resources", type="vm") if r["vmid"] == 100)
    listed = next(r for r in await driver.call("GET", "/nodes/pve1/qemu") if r["vmid"] == 100)
    for key in ("cpu", "mem", "uptime", *COUNTERS):
        assert row[key] == listed[key] == now[key]
    node = await driver.call("GET", "/nodes/pve1/status")
    assert node["cpu"] >= 2 / 16  # two cores flat out on a 16-CPU node


async def test_counters_restart_on_reboot_and_the_profile_stays(driver: SimDriver) -> None:
    await driver.clone(100)
    driver.sim.set_load(100, "runaway")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    driver.sim.clock.advance(900)
    before = await current(driver, 100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/reboot")
    after = await current(driver, 100)
    assert after["uptime"] < 10 and after["netin"] < before["netin"] / 50
    assert after["mem"] < 0.4 * MAXMEM and after["cpu"] == 1.0
    truth = counters("runaway", 100, seconds_since(driver, started_at(driver, 100)))
    assert after["netin"] == int(truth["netin"])
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/stop")
    stopped = await current(driver, 100)
    assert stopped["cpu"] == 0 and all(stopped[c] == 0 for c in COUNTERS)


# ---- choosing a profile -------------------------------------------------------------------------
async def test_admin_endpoint_sets_lists_and_resets(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.clone(101)
    empty = (await driver.api.get(ADMIN)).json()["data"]
    assert empty == {
        "profiles": {},
        "effective": {"100": "auto", "101": "auto"},
        "available": ["auto", "idle", "steady", "spiky", "runaway"],
    }
    answer = await driver.api.put(ADMIN, json={"vmid": 100, "profile": "runaway"})
    assert answer.status_code == 200 and answer.json()["data"]["profiles"] == {"100": "runaway"}
    await driver.api.put(ADMIN, json={"profiles": {"101": "idle", "100": "spiky"}})
    listed = (await driver.api.get(ADMIN)).json()["data"]
    assert listed["profiles"] == {"100": "spiky", "101": "idle"} == listed["effective"]
    await driver.api.put(ADMIN, json={"profiles": {"101": None}})  # null drops one assignment
    assert (await driver.api.get(ADMIN)).json()["data"]["profiles"] == {"100": "spiky"}
    reset = await driver.api.delete(ADMIN)
    assert reset.status_code == 200 and reset.json()["data"]["profiles"] == {}
    assert driver.sim.cluster.guests[100].load is None
    bad_method = await driver.api.post(ADMIN, json={"vmid": 100, "profile": "idle"})
    assert bad_method.status_code == 400 and "POST /_sim/load" in bad_method.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"vmid": 100, "profile": "bogus"}, "unknown load profile 'bogus': choose one of auto, idle,"),
        ({"vmid": 555, "profile": "idle"}, "no guest with vmid 555"),
        ({"profiles": {"100": "idle", "555": "idle"}}, "no guest with vmid 555"),
        ({"profiles": {"100": "idle", "abc": "idle"}}, "vmid must be an integer, not 'abc'"),
        ({"vmid": 100}, 'PUT /_sim/load takes {"vmid": N, "profile": P}'),
        ({"vmid": 100, "profile": "idle", "profiles": {}}, "PUT /_sim/load takes"),
        ({"vmid": 100, "profile": 3}, "load profile must be a string or null, not 3"),
        ([100, "idle"], "PUT /_sim/load takes"),
    ],
)
async def test_admin_endpoint_refuses_bad_requests_and_changes_nothing(
    driver: SimDriver, body: Any, message: str
) -> None:
    await driver.clone(100)
    answer = await driver.api.put(ADMIN, json=body)
    assert answer.status_code == 400
    assert answer.json()["data"] is None and answer.json()["message"].startswith(message)
    assert driver.sim.cluster.guests[100].load is None


async def test_a_load_tag_selects_the_profile_and_the_admin_assignment_wins(driver: SimDriver) -> None:
    # Tag the template once: its clones inherit the tag, and with it the profile.
    await driver.call("PUT", "/nodes/pve1/qemu/9000/config", tags="autovibe;template;load-runaway")
    await running_clone(driver, 100)
    await running_clone(driver, 101, tags="team-a;load-idle")
    effective = (await driver.api.get(ADMIN)).json()["data"]["effective"]
    assert effective == {"100": "runaway", "101": "idle"}
    assert (await current(driver, 100))["cpu"] == 1.0
    await driver.api.put(ADMIN, json={"vmid": 100, "profile": "steady"})
    driver.sim.clock.advance(60)
    assert 0.30 <= (await current(driver, 100))["cpu"] <= 0.40
    await driver.api.delete(ADMIN)  # back to the tag
    driver.sim.clock.advance(60)
    assert (await current(driver, 100))["cpu"] == 1.0
    # Unknown load tags are ignored.
    await running_clone(driver, 102, tags="load-turbo")
    assert (await driver.api.get(ADMIN)).json()["data"]["effective"]["102"] == "auto"


# ---- switching a running guest ------------------------------------------------------------------
async def test_switching_a_running_guest_is_piecewise_and_keeps_counters_monotonic(
    driver: SimDriver,
) -> None:
    await running_clone(driver, 100)
    boot = started_at(driver, 100)
    rows = await sample(driver, 100, seconds=600)
    assert_counters_are_the_integral(rows, "auto", 100)
    switch = driver.sim.clock.now()
    assert (await driver.api.put(ADMIN, json={"vmid": 100, "profile": "runaway"})).status_code == 200
    base = counters("auto", 100, switch - boot)
    rows += await sample(driver, 100, seconds=900)
    for before, after in itertools.pairwise(rows):
        assert all(after[c] >= before[c] for c in COUNTERS)
    for row in rows[60:]:
        run = counters("runaway", 100, row["now"] - switch)
        assert {c: row[c] for c in COUNTERS} == {c: int(base[c] + run[c]) for c in COUNTERS}
        assert row["cpu"] == 1.0 and row["uptime"] == int(row["t"])
    # mem climbs again from the switch, whatever the uptime: full ten minutes after it.
    assert rows[61]["mem"] < 0.4 * MAXMEM and rows[-1]["mem"] == int(0.95 * MAXMEM)
    # A tag change switches too, and so does dropping the assignment.
    await driver.api.delete(ADMIN)
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", tags="load-idle")
    rows += await sample(driver, 100, seconds=300)
    for before, after in itertools.pairwise(rows):
        assert all(after[c] >= before[c] for c in COUNTERS)
    assert 0.01 <= rows[-1]["cpu"] <= 0.02


async def test_a_switch_of_a_stopped_guest_waits_for_its_boot(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.api.put(ADMIN, json={"vmid": 100, "profile": "runaway"})
    assert driver.sim.cluster.guests[100].load_segment is None
    driver.sim.clock.advance(3600)
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    driver.sim.clock.advance(30)
    status = await current(driver, 100)
    assert status["cpu"] == 1.0
    t = seconds_since(driver, started_at(driver, 100))
    assert status["netin"] == int(counters("runaway", 100, t)["netin"])


# ---- persistence --------------------------------------------------------------------------------
async def test_profiles_and_switches_survive_a_reload_in_another_process(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    first = SimApp.open(state, speed=0)
    token = first.ensure_token()
    async with _client(first, token) as api:
        driver = SimDriver(first, api)
        await running_clone(driver, 100)
        first.clock.advance(300)
        await api.put(ADMIN, json={"vmid": 100, "profile": "runaway"})  # a switch mid-boot
        await running_clone(driver, 101, tags="load-steady")
    second = SimApp.open(state, speed=0)
    second.clock.advance(first.clock.now() - second.clock.now())  # the first stepped after its last save
    first.clock.advance(120)
    second.clock.advance(120)
    async with _client(first, token) as one, _client(second, token) as two:
        for vmid in (100, 101):
            path = f"/nodes/pve1/qemu/{vmid}/status/current"
            mine, theirs = (await one.get(path)).json()["data"], (await two.get(path)).json()["data"]
            assert mine == theirs
        assert (await two.get(ADMIN)).json()["data"]["effective"] == {"100": "runaway", "101": "steady"}
    assert second.cluster.guests[100].load == "runaway"
    assert second.cluster.guests[100].load_segment == first.cluster.guests[100].load_segment


async def test_state_files_without_load_profiles_still_open(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    first = SimApp.open(state, speed=0)
    token = first.ensure_token()
    async with _client(first, token) as api:
        await running_clone(SimDriver(first, api), 100)
    first.clock.advance(600)
    async with _client(first, token) as api:
        expected = (await api.get("/nodes/pve1/qemu/100/status/current")).json()["data"]
    data = json.loads(state.read_text())
    for guest in data["cluster"]["guests"]:
        del guest["load"], guest["load_segment"]
    state.write_text(json.dumps(data))
    old = SimApp.open(state, speed=0)
    old.clock.advance(first.clock.now() - old.clock.now())
    async with _client(old, token) as api:
        assert (await api.get("/nodes/pve1/qemu/100/status/current")).json()["data"] == expected
        assert (await api.get(ADMIN)).json()["data"]["effective"]["100"] == "auto"


def _client(sim: SimApp, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim),
        base_url="https://pve1:8006/api2/json",
        headers={"Authorization": f"PVEAPIToken={token}"},
    )
