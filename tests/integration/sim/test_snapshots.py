"""Snapshot trees, RAM state, storage-specific rollback rules and re-parenting, as PVE does them."""

from __future__ import annotations

from typing import Any

from tests.fakes.simulated import SimDriver


def tree(entries: list[dict[str, Any]]) -> dict[str, str | None]:
    return {e["name"]: e.get("parent") for e in entries}


async def running_clone(driver: SimDriver, vmid: int = 100, **clone: Any) -> None:
    await driver.clone(vmid, **clone)
    await driver.ok("POST", f"/nodes/pve1/qemu/{vmid}/status/start")


async def test_snapshots_form_a_tree_with_a_current_entry(driver: SimDriver) -> None:
    await running_clone(driver)
    await driver.ok(
        "POST", "/nodes/pve1/qemu/100/snapshot", snapname="base", vmstate=True, description="clean"
    )
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="step1")
    entries = await driver.call("GET", "/nodes/pve1/qemu/100/snapshot")
    assert tree(entries) == {"base": None, "step1": "base", "current": "step1"}
    by_name = {e["name"]: e for e in entries}
    assert by_name["base"]["vmstate"] == 1 and by_name["step1"]["vmstate"] == 0
    assert by_name["base"]["description"] == "clean"
    assert by_name["current"]["description"] == "You are here!" and by_name["current"]["running"] == 1
    section = await driver.call("GET", "/nodes/pve1/qemu/100/snapshot/base/config")
    assert section["vmstate"] == "shared:vm-100-state-base" and section["cores"] == 2
    await driver.call("PUT", "/nodes/pve1/qemu/100/snapshot/base/config", description="renamed")
    assert (await driver.call("GET", "/nodes/pve1/qemu/100/snapshot/base/config"))["description"] == "renamed"


async def test_vmstate_is_ignored_for_a_stopped_vm(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="cold", vmstate=True)
    assert (await driver.call("GET", "/nodes/pve1/qemu/100/snapshot"))[0]["vmstate"] == 0


async def test_rollback_with_ram_resumes_and_without_stays_stopped(driver: SimDriver) -> None:
    await running_clone(driver)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="hot", vmstate=True)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="disk")
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", memory=8192)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot/disk/rollback")
    current = await driver.call("GET", "/nodes/pve1/qemu/100/status/current")
    assert current["status"] == "stopped"
    assert (await driver.config(100))["memory"] == "4096"
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot/hot/rollback")
    assert (await driver.call("GET", "/nodes/pve1/qemu/100/status/current"))["status"] == "running"
    assert tree(await driver.call("GET", "/nodes/pve1/qemu/100/snapshot"))["current"] == "hot"
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/stop")
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot/disk/rollback", start=True)
    assert (await driver.call("GET", "/nodes/pve1/qemu/100/status/current"))["status"] == "running"


async def test_zfs_rolls_back_only_to_the_newest_snapshot(driver: SimDriver) -> None:
    await driver.clone(100, full=True, storage="local-zfs")
    await driver.clone(101, full=True, storage="local-lvm")
    for vmid in (100, 101):
        for name in ("first", "second"):
            await driver.ok("POST", f"/nodes/pve1/qemu/{vmid}/snapshot", snapname=name)
    refused = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/100/snapshot/first/rollback"))
    assert (
        refused["exitstatus"]
        == "can't rollback, 'first' is not most recent snapshot on 'local-zfs:vm-100-disk-0'"
    )
    assert "lock" not in await driver.config(100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot/second/rollback")
    await driver.ok("POST", "/nodes/pve1/qemu/101/snapshot/first/rollback")  # LVM-thin: any snapshot


async def test_deleting_a_snapshot_reparents_children_and_frees_its_ram_state(driver: SimDriver) -> None:
    await running_clone(driver)
    for name in ("aa", "bb", "cc"):
        await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname=name, vmstate=True)
    assert "shared:vm-100-state-bb" in driver.sim.cluster.volumes
    await driver.ok("DELETE", "/nodes/pve1/qemu/100/snapshot/bb")
    assert tree(await driver.call("GET", "/nodes/pve1/qemu/100/snapshot")) == {
        "aa": None,
        "cc": "aa",
        "current": "cc",
    }
    assert "shared:vm-100-state-bb" not in driver.sim.cluster.volumes
    await driver.ok("DELETE", "/nodes/pve1/qemu/100/snapshot/aa")
    assert tree(await driver.call("GET", "/nodes/pve1/qemu/100/snapshot")) == {"cc": None, "current": "cc"}


async def test_snapshot_names_follow_pve_rules(driver: SimDriver) -> None:
    await driver.clone(100)
    bad = await driver.request("POST", "/nodes/pve1/qemu/100/snapshot", snapname="bad name!")
    assert bad.status_code == 400 and "snapname" in bad.json()["errors"]
    reserved = await driver.request("POST", "/nodes/pve1/qemu/100/snapshot", snapname="current")
    assert reserved.json()["message"] == "unable to use snapshot name 'current' (reserved name)\n"
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="dup")
    dup = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/100/snapshot", snapname="dup"))
    assert dup["exitstatus"] == "snapshot name 'dup' already used"
    missing = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/100/snapshot/nope/rollback"))
    assert missing["exitstatus"] == "snapshot 'nope' does not exist"


async def test_templates_refuse_snapshots(driver: SimDriver) -> None:
    status = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/9000/snapshot", snapname="x1"))
    assert status["exitstatus"] == "you can't take a snapshot if it's a template"


async def test_clone_from_a_snapshot_takes_its_config_but_never_its_ram(driver: SimDriver) -> None:
    await running_clone(driver)
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="before", vmstate=True)
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", cores=8)
    await driver.clone(200, source=100, snapname="before", name="branch")
    config = await driver.config(200)
    assert config["cores"] == 2 and "vmstate" not in config and "parent" not in config
    assert (await driver.call("GET", "/nodes/pve1/qemu/200/snapshot")) == [
        {"name": "current", "digest": config["digest"], "running": 0, "description": "You are here!"}
    ]


async def test_zfs_snapshots_cannot_be_full_cloned(driver: SimDriver) -> None:
    """ZFSPoolPlugin's `copy` feature has no `snap`: PVE refuses before forking a worker."""
    await driver.clone(100, full=True, storage="local-zfs")
    await driver.ok("POST", "/nodes/pve1/qemu/100/snapshot", snapname="first")
    refused = await driver.request("POST", "/nodes/pve1/qemu/100/clone", newid=200, snapname="first", full=1)
    assert refused.status_code == 500 and "Full clone feature is not available" in refused.text
    await driver.clone(201, source=100, full=True)  # the current state still clones
