"""Backup jobs (``POST /nodes/{node}/vzdump``): the ``backup`` lock, archives, failures and persistence."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from autovibe.sim.app import SimApp
from autovibe.sim.clock import SimClock
from autovibe.sim.cluster import Cluster
from autovibe.sim.faults import FaultPlan, TaskFault
from tests.fakes.simulated import SimDriver

GIB, MIB = 1024**3, 1024**2
STREAM = 200 * MIB  # one copy stream's limit (local's 400 MiB/s and shared's 2000 are not the bottleneck)
TEMPLATE_USED = 4 * GIB  # what a linked clone of 9000 reads: its base's allocated blocks
BACKUP_S = 1.0 + TEMPLATE_USED / STREAM + 1.0  # prepare, copy, finalize: 22.48 s
ZSTD_SIZE = TEMPLATE_USED // 2 + 4096
VM = "/nodes/pve1/qemu"


async def running_vm(driver: SimDriver, vmid: int) -> None:
    await driver.clone(vmid)
    await driver.ok("POST", f"{VM}/{vmid}/status/start")


async def backup(driver: SimDriver, **params: Any) -> str:
    upid: str = await driver.call("POST", "/nodes/pve1/vzdump", **{"storage": "local", **params})
    return upid


async def lock_of(driver: SimDriver, vmid: int) -> str | None:
    current = await driver.call("GET", f"{VM}/{vmid}/status/current")
    return current.get("lock")


async def log_of(driver: SimDriver, upid: str) -> list[str]:
    lines = await driver.call("GET", f"/nodes/pve1/tasks/{upid}/log", limit=500)
    return [line["t"] for line in lines]


async def archives(driver: SimDriver, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await driver.call(
        "GET", "/nodes/pve1/storage/local/content", content="backup", **params
    )
    return rows


async def test_the_guest_is_locked_while_its_archive_is_written(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    pid = (await driver.call("GET", f"{VM}/100/status/current"))["pid"]
    upid = await backup(driver, vmid="100", compress="zstd")
    assert upid.split(":")[5:7] == ["vzdump", "100"]  # one guest: its VMID is the worker's id
    assert await lock_of(driver, 100) == "backup"
    resources = {r["vmid"]: r for r in await driver.call("GET", "/cluster/resources", type="vm")}
    assert resources[100]["lock"] == "backup"
    listed = {r["vmid"]: r for r in await driver.call("GET", VM)}
    assert listed[100]["lock"] == "backup"
    assert (await driver.config(100))["lock"] == "backup"
    driver.sim.clock.advance(int(BACKUP_S))
    assert (await driver.status(upid))["status"] == "running"
    assert await lock_of(driver, 100) == "backup"
    driver.sim.clock.advance(1)
    assert (await driver.status(upid))["exitstatus"] == "OK"
    current = await driver.call("GET", f"{VM}/100/status/current")
    assert "lock" not in current and current["status"] == "running" and current["pid"] == pid  # snapshot mode
    log = await log_of(driver, upid)
    assert log[0].startswith("INFO: starting new backup job: vzdump 100 ")
    assert "INFO: Starting Backup of VM 100 (qemu)" in log
    assert "INFO: Finished Backup of VM 100 (00:00:22)" in log
    assert log[-2:] == ["INFO: Backup job finished successfully", "TASK OK"]


async def test_snapshots_and_config_changes_fail_during_a_backup_and_work_after(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    await driver.ok("POST", f"{VM}/100/snapshot", snapname="before")
    upid = await backup(driver, vmid="100")
    for method, path, params in (
        ("POST", f"{VM}/100/snapshot", {"snapname": "during"}),
        ("DELETE", f"{VM}/100/snapshot/before", {}),
        ("POST", f"{VM}/100/snapshot/before/rollback", {}),
    ):
        refused = await driver.finish(await driver.call(method, path, **params))
        assert refused["exitstatus"] == "VM is locked (backup)"
    sync = await driver.request("PUT", f"{VM}/100/config", cores=4)
    assert sync.status_code == 500 and sync.json()["message"] == "VM is locked (backup)\n"
    assert (await driver.finish(upid))["exitstatus"] == "OK"
    await driver.ok("POST", f"{VM}/100/snapshot", snapname="during")
    await driver.call("PUT", f"{VM}/100/config", cores=4)
    names = {s["name"] for s in await driver.call("GET", f"{VM}/100/snapshot")}
    assert names == {"before", "during", "current"}


async def test_the_archive_is_listed_counted_and_deletable(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    before = (await driver.call("GET", "/nodes/pve1/storage/local/status"))["used"]
    upid = await backup(
        driver, vmid="100", compress="zstd", **{"notes-template": "{{guestname}} on {{node}}"}
    )
    start = driver.sim.cluster.tasks.tasks[upid].starttime
    await driver.finish(upid)
    [archive] = await archives(driver)
    assert archive["volid"].startswith("local:backup/vzdump-qemu-100-")
    assert archive["volid"].endswith(".vma.zst")
    assert archive == {
        "volid": archive["volid"],
        "vmid": 100,
        "size": ZSTD_SIZE,
        "format": "vma.zst",
        "content": "backup",
        "ctime": start,
        "subtype": "qemu",
        "notes": "Copy-of-VM-claude-code-template on pve1",
    }
    assert await archives(driver, vmid=101) == []
    images = await driver.call("GET", "/nodes/pve1/storage/local/content", content="images")
    assert images == []
    after = (await driver.call("GET", "/nodes/pve1/storage/local/status"))["used"]
    assert after - before == ZSTD_SIZE
    info = await driver.call("GET", f"/nodes/pve1/storage/local/content/{archive['volid']}")
    assert info["path"] == "/var/lib/vz/dump/" + archive["volid"].split("/", 1)[1]
    assert (info["size"], info["format"], info["protected"]) == (ZSTD_SIZE, "vma.zst", 0)
    # Destroying the guest keeps its backups, as PVE does.
    await driver.ok("POST", f"{VM}/100/status/stop")
    await driver.ok("DELETE", f"{VM}/100")
    assert [a["volid"] for a in await archives(driver)] == [archive["volid"]]
    deleted = await driver.ok("DELETE", f"/nodes/pve1/storage/local/content/{archive['volid']}")
    assert deleted["type"] == "imgdel" and deleted["id"] == "100@local"
    assert await archives(driver) == []
    assert (await driver.call("GET", "/nodes/pve1/storage/local/status"))["used"] == before


async def test_a_multi_guest_job_locks_one_guest_at_a_time(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    await driver.clone(101)  # stopped: backed up in stop mode, stays stopped
    upid = await backup(driver, vmid="101,100")
    assert upid.split(":")[6] == ""  # several guests: no id
    assert (await lock_of(driver, 100), await lock_of(driver, 101)) == ("backup", None)
    driver.sim.clock.advance(BACKUP_S + 0.5)
    assert (await lock_of(driver, 100), await lock_of(driver, 101)) == (None, "backup")
    status = await driver.finish(upid)
    assert status["exitstatus"] == "OK"
    assert (await lock_of(driver, 100), await lock_of(driver, 101)) == (None, None)
    assert [a["vmid"] for a in await archives(driver)] == [100, 101]
    log = await log_of(driver, upid)
    assert log.index("INFO: Starting Backup of VM 100 (qemu)") < log.index(
        "INFO: Starting Backup of VM 101 (qemu)"
    )
    assert "INFO: backup mode: stop" in log
    assert (await driver.call("GET", f"{VM}/101/status/current"))["status"] == "stopped"


async def test_stop_mode_shuts_a_running_guest_down_and_starts_it_again(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    boots = driver.sim.cluster.guests[100].boots
    upid = await backup(driver, vmid="100", mode="stop")
    driver.sim.clock.advance(5.5)  # the shutdown is done, the restart under way
    assert (await driver.call("GET", f"{VM}/100/status/current"))["status"] == "stopped"
    assert await lock_of(driver, 100) == "backup"
    driver.sim.clock.advance(3)  # QEMU runs again during the copy
    assert (await driver.call("GET", f"{VM}/100/status/current"))["status"] == "running"
    assert (await driver.finish(upid))["exitstatus"] == "OK"
    assert driver.sim.cluster.guests[100].boots == boots + 1
    log = await log_of(driver, upid)
    assert "INFO: stopping virtual guest" in log and "INFO: resuming VM again" in log


async def test_a_storage_without_backup_content_fails_the_job(driver: SimDriver) -> None:
    await driver.clone(100)
    wrong = await driver.finish(await backup(driver, vmid="100", storage="local-lvm"))
    assert wrong["exitstatus"] == (
        "could not get storage information for 'local-lvm': "
        "can't use storage 'local-lvm' for backups - wrong content type"
    )
    missing = await driver.finish(await backup(driver, vmid="100", storage="nowhere"))
    assert missing["exitstatus"] == (
        "could not activate storage 'nowhere': storage 'nowhere' does not exist "
        "could not get storage information for 'nowhere': storage 'nowhere' does not exist"
    )
    assert await lock_of(driver, 100) is None


async def test_missing_and_locked_guests_fail_alone_and_the_job_reports_errors(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    await running_vm(driver, 101)
    # VM 100 is busy saving a RAM snapshot when the job (VMIDs in numeric order) reaches it.
    snap = await driver.call("POST", f"{VM}/100/snapshot", snapname="ram", vmstate=True)
    upid = await backup(driver, vmid="555,101,100")
    assert upid.split(":")[6] == ""
    status = await driver.finish(upid)
    assert status["exitstatus"] == "job errors"
    log = await log_of(driver, upid)
    assert "ERROR: Backup of VM 100 failed - VM is locked (snapshot)" in log
    assert "ERROR: Backup of VM 555 failed - unable to find VM '555'" in log
    assert log[-2:] == ["INFO: Backup job finished with errors", "TASK ERROR: job errors"]
    assert [a["vmid"] for a in await archives(driver)] == [101]
    assert (await driver.finish(snap))["exitstatus"] == "OK"


async def test_parameter_errors_and_guests_elsewhere(driver: SimDriver) -> None:
    await driver.clone(100)
    conflict = await driver.request("POST", "/nodes/pve1/vzdump", vmid="100", all=True)
    assert conflict.status_code == 400 and conflict.json()["errors"] == {
        "all": "option conflicts with option 'vmid'"
    }
    missing = await driver.request("POST", "/nodes/pve1/vzdump", storage="local")
    assert missing.status_code == 400 and missing.json()["errors"] == {"vmid": "property is missing"}
    # VM 100 lives on pve1: asked on pve2, the job has nothing to do and PVE answers OK, no task.
    assert await driver.call("POST", "/nodes/pve2/vzdump", vmid="100") == "OK"


async def test_an_injected_fault_fails_the_job_and_cleans_up(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    driver.sim.cluster.faults = FaultPlan(tasks=[TaskFault("vzdump", 1.0)])
    upid = await backup(driver, vmid="100")
    assert await lock_of(driver, 100) == "backup"
    status = await driver.finish(upid)
    assert status["exitstatus"] == "backup failed: simulated storage error"
    assert await lock_of(driver, 100) is None
    assert not [v for v in driver.sim.cluster.volumes.values() if v.content == "backup"]  # nor a .dat
    assert "ERROR: Backup of VM 100 failed - backup failed: simulated storage error" in await log_of(
        driver, upid
    )


async def test_an_interrupted_job_unlocks_and_restarts_its_guest(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    upid = await backup(driver, vmid="100", mode="stop")
    driver.sim.clock.advance(6)  # shut down, not started again yet
    assert (await driver.call("GET", f"{VM}/100/status/current"))["status"] == "stopped"
    await driver.call("DELETE", f"/nodes/pve1/tasks/{upid}")
    status = await driver.status(upid)
    assert status["exitstatus"] == "received interrupt"
    current = await driver.call("GET", f"{VM}/100/status/current")
    assert "lock" not in current and current["status"] == "running"
    assert not [v for v in driver.sim.cluster.volumes.values() if v.content == "backup"]


async def test_a_second_job_on_the_node_waits_for_the_global_lock(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    await running_vm(driver, 101)
    first = await backup(driver, vmid="100")
    second = await backup(driver, vmid="101")
    assert await lock_of(driver, 101) is None
    assert await log_of(driver, second) == ["INFO: trying to get global lock - waiting..."]
    driver.sim.clock.advance(BACKUP_S + 0.5)
    assert (await driver.status(first))["exitstatus"] == "OK"
    assert await lock_of(driver, 101) == "backup"
    assert (await driver.finish(second))["exitstatus"] == "OK"
    assert (await log_of(driver, second))[1] == "INFO: got global lock"


@asynccontextmanager
async def as_root(sim: SimApp) -> AsyncIterator[SimDriver]:
    """root@pam itself, logged in with a ticket (its API tokens may not set root-only options)."""
    sim.cluster.access.set_password("root@pam", "root-pw")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim), base_url="https://pve1:8006/api2/json"
    ) as client:
        login = (
            await client.post("/access/ticket", data={"username": "root@pam", "password": "root-pw"})
        ).json()
        client.cookies.set("PVEAuthCookie", login["data"]["ticket"])
        client.headers["CSRFPreventionToken"] = login["data"]["CSRFPreventionToken"]
        yield SimDriver(sim, client)


async def test_retention_prunes_old_archives_and_spares_protected_ones(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    refused = await driver.request(
        "POST", "/nodes/pve1/vzdump", vmid="100", **{"prune-backups": "keep-last=2"}
    )
    assert refused.json()["errors"] == {"prune-backups": "Only root may set this option."}  # a token
    await driver.finish(await backup(driver, vmid="100", protected=True))
    async with as_root(driver.sim) as root:
        for _ in range(3):
            driver.sim.clock.advance(60)
            await root.finish(await backup(root, vmid="100", **{"prune-backups": "keep-last=2"}))
    kept = await archives(driver)
    assert len(kept) == 3 and sum(1 for a in kept if a.get("protected")) == 1
    protected = next(a["volid"] for a in kept if a.get("protected"))
    refused = await driver.finish(
        await driver.call("DELETE", f"/nodes/pve1/storage/local/content/{protected}")
    )
    assert refused["exitstatus"] == f"cannot remove protected volume '{protected.split(':')[1]}' on 'local'"


@asynccontextmanager
async def reopened(sim: SimApp) -> AsyncIterator[SimDriver]:
    """The saved state loaded into a new simulator, as another process sharing ``--state`` would."""
    saved = json.loads(json.dumps(sim.snapshot()))
    fresh = SimApp(
        Cluster.from_dict(saved["cluster"]),
        SimClock.from_dict(saved["clock"]),
        client_tokens=saved["client_tokens"],
    )
    token = fresh.ensure_token("root@pam", "test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fresh),
        base_url="https://pve1:8006/api2/json",
        headers={"Authorization": f"PVEAPIToken={token}"},
    ) as client:
        yield SimDriver(fresh, client)


async def test_a_running_job_survives_a_save_and_reload(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    await running_vm(driver, 101)
    upid = await backup(driver, vmid="100,101", compress="zstd", protected=True)
    driver.sim.clock.advance(10)
    await driver.status(upid)  # replays up to now before saving
    assert driver.sim.cluster.to_dict() == Cluster.from_dict(driver.sim.cluster.to_dict()).to_dict()
    async with reopened(driver.sim) as other:
        assert await lock_of(other, 100) == "backup"
        assert (await other.finish(upid))["exitstatus"] == "OK"
        assert [(a["vmid"], a["size"], a["protected"]) for a in await archives(other)] == [
            (100, ZSTD_SIZE, 1),
            (101, ZSTD_SIZE, 1),
        ]
        assert await lock_of(other, 101) is None


async def test_ram_state_volumes_are_listed_counted_and_freed(driver: SimDriver) -> None:
    await running_vm(driver, 100)
    before = (await driver.call("GET", "/nodes/pve1/storage/shared/status"))["used"]
    await driver.ok("POST", f"{VM}/100/snapshot", snapname="hot", vmstate=True)
    memory = 4096 * MIB
    rows = await driver.call("GET", "/nodes/pve1/storage/shared/content", vmid=100)
    state = [r for r in rows if r["volid"] == "shared:vm-100-state-hot"]
    assert state == [{**state[0], "content": "images", "size": memory, "used": memory}]
    assert (await driver.call("GET", "/nodes/pve1/storage/shared/status"))["used"] == before + memory
    await driver.ok("DELETE", f"{VM}/100/snapshot/hot")
    rows = await driver.call("GET", "/nodes/pve1/storage/shared/content", vmid=100)
    assert "shared:vm-100-state-hot" not in [r["volid"] for r in rows]
    assert (await driver.call("GET", "/nodes/pve1/storage/shared/status"))["used"] == before
