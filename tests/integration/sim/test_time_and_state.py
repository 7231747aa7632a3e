"""The task resource model, usage counters, persistence between processes, and fault injection."""

from __future__ import annotations

from pathlib import Path

import httpx

from autovibe.sim.app import SimApp
from tests.fakes.simulated import SimDriver

GIB, MIB = 1024**3, 1024**2
CLONE_SETUP_S = 1.0
STREAM = 200 * MIB  # one copy stream's limit
SHARED_BW = 2000 * MIB  # what all copies through `shared` share
TEMPLATE_USED = 4 * GIB  # allocated blocks of template 9000's thin disk: what a full clone copies


def duration(driver: SimDriver, upid: str) -> float:
    task = driver.sim.cluster.tasks.tasks[upid]
    assert task.endtime is not None
    return task.endtime - task.starttime


async def test_a_clone_is_stream_limited_until_the_storage_is_shared_out(driver: SimDriver) -> None:
    alone = await driver.call("POST", "/nodes/pve1/qemu/9000/clone", newid=100, full=True)
    await driver.finish(alone, step=0.25)
    assert abs(duration(driver, alone) - (CLONE_SETUP_S + TEMPLATE_USED / STREAM)) <= 1  # 21.5 s
    # Twelve streams want 2400 MiB/s from a storage that gives 2000: each gets a twelfth.
    crowd = [
        await driver.call("POST", "/nodes/pve1/qemu/9000/clone", newid=200 + i, full=True) for i in range(12)
    ]
    for upid in crowd:
        await driver.finish(upid, step=0.25)
    expected = CLONE_SETUP_S + TEMPLATE_USED / (SHARED_BW / 12)  # 25.6 s
    assert all(abs(duration(driver, u) - expected) <= 1 for u in crowd)
    content = await driver.call("GET", "/nodes/pve1/storage/shared/content", vmid=200)
    assert content == [
        {**content[0], "volid": "shared:vm-200-disk-0", "size": 20 * GIB, "used": TEMPLATE_USED}
    ]


async def test_usage_counters_grow_while_running_and_restart_with_the_vm(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    driver.sim.clock.advance(600)
    early = await driver.call("GET", "/nodes/pve1/qemu/100/status/current")
    driver.sim.clock.advance(600)
    late = await driver.call("GET", "/nodes/pve1/qemu/100/status/current")
    assert late["uptime"] - early["uptime"] == 600
    for counter in ("netin", "netout", "diskread", "diskwrite"):
        assert late[counter] > early[counter] > 0
    assert 0 < late["mem"] < late["maxmem"] and 0 <= late["cpu"] <= 1
    rows = {r["vmid"]: r for r in await driver.call("GET", "/cluster/resources", type="vm")}
    assert rows[100]["disk"] == 0 and rows[100]["netin"] == late["netin"]  # PVE's disk=0 quirk kept
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/reboot")
    rebooted = await driver.call("GET", "/nodes/pve1/qemu/100/status/current")
    assert rebooted["netin"] < late["netin"] and rebooted["uptime"] < 10


async def test_state_persists_between_processes_and_tasks_finish_while_nobody_looks(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    first = SimApp.open(state, speed=0)
    token = first.ensure_token()
    async with _client(first, token) as api:
        upid = (await api.post("/nodes/pve1/qemu/9000/clone", data={"newid": 100, "full": 1})).json()["data"]
    assert state.stat().st_mode & 0o777 == 0o600
    second = SimApp.open(state, speed=0)
    assert second.ensure_token() == token
    second.clock.advance(120)
    async with _client(second, token) as api:
        status = (await api.get(f"/nodes/pve1/tasks/{upid}/status")).json()["data"]
        assert status["exitstatus"] == "OK"
        assert (await api.get("/nodes/pve1/qemu/100/config")).json()["data"]["name"].startswith("Copy-of-VM")
    # The first process sees the second one's changes on its next request.
    async with _client(first, token) as api:
        assert (await api.get("/nodes/pve1/qemu/100/status/current")).status_code == 200


async def test_injected_task_failures_clean_up_like_pve(driver: SimDriver) -> None:
    plan = {
        "requests": [],
        "tasks": [{"task_type": "qmclone", "failure_rate": 1.0, "message": "clone failed: boom"}],
    }
    assert (await driver.api.put("https://pve1:8006/_sim/faults", json=plan)).status_code == 200
    status = await driver.finish(
        await driver.call("POST", "/nodes/pve1/qemu/9000/clone", newid=100, full=True)
    )
    assert status["exitstatus"] == "clone failed: boom"
    log = await driver.call("GET", f"/nodes/pve1/tasks/{status['upid']}/log")
    assert log[-1]["t"] == "TASK ERROR: clone failed: boom"
    assert 100 not in driver.sim.cluster.guests
    assert not [v for v in driver.sim.cluster.volumes.values() if v.vmid == 100]
    await driver.api.delete("https://pve1:8006/_sim/faults")
    await driver.clone(100)


async def test_injected_request_faults_answer_like_a_struggling_proxy(driver: SimDriver) -> None:
    plan = {"requests": [{"method": "GET", "path": "/version", "kind": "http_503", "times": 1}], "tasks": []}
    await driver.api.put("https://pve1:8006/_sim/faults", json=plan)
    assert (await driver.request("GET", "/version")).status_code == 503
    assert (await driver.request("GET", "/version")).status_code == 200


async def test_the_admin_clock_endpoint_steps_time(driver: SimDriver) -> None:
    before = driver.sim.clock.now()
    answer = await driver.api.post("https://pve1:8006/_sim/clock", json={"advance": 3600})
    assert answer.json()["data"]["now"] == before + 3600


def _client(sim: SimApp, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim),
        base_url="https://pve1:8006/api2/json",
        headers={"Authorization": f"PVEAPIToken={token}"},
    )
