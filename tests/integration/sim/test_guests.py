"""The simulated cluster behaves like PVE for the guest lifecycle: seeds, clones, locks, power, destroy."""

from __future__ import annotations

import pytest

from tests.fakes.simulated import SimDriver

GIB = 1024**3


async def test_seed_cluster_has_three_nodes_and_two_templates(driver: SimDriver) -> None:
    version = await driver.call("GET", "/version")
    assert version["version"].startswith("8.")
    nodes = await driver.call("GET", "/nodes")
    assert sorted(n["node"] for n in nodes) == ["pve1", "pve2", "pve3"]
    vms = await driver.call("GET", "/cluster/resources", type="vm")
    templates = {v["vmid"]: v for v in vms if v["template"] == 1}
    assert templates[9000]["name"] == "claude-code-template"
    assert templates[9000]["maxmem"] == 4096 * 1024**2 and templates[9000]["maxcpu"] == 2
    assert templates[9000]["maxdisk"] == 20 * GIB
    assert templates[9001]["name"] == "hub-template" and templates[9001]["maxdisk"] == 50 * GIB
    assert await driver.call("GET", "/cluster/nextid") == "100"  # a JSON string, as PVE sends it


async def test_full_clone_copies_config_with_new_identity_and_holds_clone_lock(driver: SimDriver) -> None:
    upid = await driver.call("POST", "/nodes/pve1/qemu/9000/clone", newid=100, name="agent-1", full=True)
    assert upid.startswith("UPID:pve1:") and upid.endswith(":qmclone:9000:root@pam!test:")
    assert (await driver.config(100))["lock"] == "clone"
    assert await driver.call("GET", "/nodes/pve1/tasks") == []  # archive hides running tasks
    active = await driver.call("GET", "/nodes/pve1/tasks", source="active")
    assert [t["status"] for t in active] == ["RUNNING"]
    status = await driver.finish(upid)
    assert status["exitstatus"] == "OK"
    source, config = await driver.config(9000), await driver.config(100)
    assert "lock" not in config and "template" not in config
    assert config["name"] == "agent-1"
    assert config["scsi0"].startswith("shared:vm-100-disk-0,")
    assert config["net0"].split(",")[0] != source["net0"].split(",")[0]  # new MAC
    assert config["smbios1"] != source["smbios1"]
    log = await driver.call("GET", f"/nodes/pve1/tasks/{upid}/log")
    assert log[-1] == {"n": len(log), "t": "TASK OK"}


async def test_template_clones_are_linked_by_default_and_protect_their_base(driver: SimDriver) -> None:
    await driver.clone(101)
    config = await driver.config(101)
    assert config["name"] == "Copy-of-VM-claude-code-template"
    assert config["scsi0"].startswith("shared:base-9000-disk-0/vm-101-disk-0,")
    upid = await driver.call("DELETE", "/nodes/pve1/qemu/9000")
    status = await driver.finish(upid)
    assert status["exitstatus"] == "base volume 'shared:base-9000-disk-0' is still in use by linked cloned"


async def test_linked_clone_of_a_normal_vm_is_refused_before_any_task(driver: SimDriver) -> None:
    await driver.clone(100, full=True)
    response = await driver.request("POST", "/nodes/pve1/qemu/100/clone", newid=102, full=False)
    assert response.status_code == 500
    assert response.json() == {
        "data": None,
        "message": "Linked clone feature is not supported for 'shared:vm-100-disk-0' (scsi0)\n",
    }


async def test_clone_onto_a_taken_vmid_fails_synchronously(driver: SimDriver) -> None:
    await driver.call("POST", "/nodes/pve1/qemu/9000/clone", newid=100)
    second = await driver.request("POST", "/nodes/pve1/qemu/9001/clone", newid=100)
    assert second.status_code == 500
    assert second.json()["message"] == "unable to create VM 100: config file already exists\n"


async def test_clone_to_local_storage_on_another_node_is_refused(driver: SimDriver) -> None:
    response = await driver.request(
        "POST", "/nodes/pve1/qemu/9000/clone", newid=100, full=True, storage="local-lvm", target="pve2"
    )
    assert response.status_code == 500
    assert response.json()["message"] == "can't clone to non-shared storage 'local-lvm'\n"
    await driver.clone(100, full=True, storage="local-lvm")
    refused = await driver.request("POST", "/nodes/pve1/qemu/100/clone", newid=101, target="pve2")
    assert refused.json()["message"] == "can't clone VM to node 'pve2' (VM uses local storage)\n"


async def test_clone_to_another_node_moves_the_new_config_there(driver: SimDriver) -> None:
    await driver.clone(100, target="pve3", full=True)
    assert (await driver.config(100, node="pve3"))["name"].startswith("Copy-of-VM")
    missing = await driver.request("GET", "/nodes/pve1/qemu/100/config")
    assert missing.status_code == 500
    assert (
        missing.json()["message"] == "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist\n"
    )


async def test_power_cycle_and_its_sync_and_async_failures(driver: SimDriver) -> None:
    await driver.clone(100)
    reboot = await driver.request("POST", "/nodes/pve1/qemu/100/status/reboot")
    assert (reboot.status_code, reboot.json()["message"]) == (500, "VM 100 not running\n")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    current = await driver.call("GET", "/nodes/pve1/qemu/100/status/current")
    assert current["status"] == "running" and current["qmpstatus"] == "running"
    # Starting a running QEMU guest is a *task* error, not an HTTP error (SEMANTICS §6).
    again = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/100/status/start"))
    assert again["exitstatus"] == "VM 100 already running"
    destroy = await driver.request("DELETE", "/nodes/pve1/qemu/100")
    assert (destroy.status_code, destroy.json()["message"]) == (500, "VM 100 is running - destroy failed\n")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/stop")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/stop")  # stopping a stopped VM succeeds
    await driver.ok("DELETE", "/nodes/pve1/qemu/100", purge=True)
    assert 100 not in {v["vmid"] for v in await driver.call("GET", "/cluster/resources", type="vm")}
    assert not [v for v in driver.sim.cluster.volumes.values() if v.vmid == 100]


async def test_a_locked_vm_refuses_conflicting_calls_in_pve_words(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
    upid = await driver.call("POST", "/nodes/pve1/qemu/100/snapshot", snapname="busy", vmstate=True)
    assert (await driver.config(100))["lock"] == "snapshot"
    put = await driver.request("PUT", "/nodes/pve1/qemu/100/config", cores=4)
    assert (put.status_code, put.json()["message"]) == (500, "VM is locked (snapshot)\n")
    other = await driver.finish(await driver.call("POST", "/nodes/pve1/qemu/100/snapshot", snapname="second"))
    assert other["exitstatus"] == "VM is locked (snapshot)"
    assert (await driver.finish(upid))["exitstatus"] == "OK"
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", cores=4)
    assert (await driver.config(100))["cores"] == 4


async def test_config_digest_and_delete(driver: SimDriver) -> None:
    await driver.clone(100)
    digest = (await driver.config(100))["digest"]
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", memory=8192, digest=digest)
    stale = await driver.request("PUT", "/nodes/pve1/qemu/100/config", memory=1024, digest=digest)
    assert stale.json()["message"] == "checksum mismatch (file change by other user?)\n"
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", delete="tags,agent")
    config = await driver.config(100)
    assert "tags" not in config and "agent" not in config and config["memory"] == "8192"
    nothing = await driver.request("PUT", "/nodes/pve1/qemu/100/config")
    assert nothing.json()["message"] == "no options specified\n"


async def test_post_config_is_a_task_and_new_disks_are_allocated(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.ok("POST", "/nodes/pve1/qemu/100/config", scsi1="local-lvm:8", net1="virtio,bridge=vmbr1")
    config = await driver.config(100)
    assert config["scsi1"] == "local-lvm:vm-100-disk-0,size=8G"
    assert config["net1"].startswith("virtio=BC:24:11:") and config["net1"].endswith(",bridge=vmbr1")


async def test_resize_grows_and_refuses_to_shrink(driver: SimDriver) -> None:
    await driver.clone(100, full=True)
    await driver.ok("PUT", "/nodes/pve1/qemu/100/resize", disk="scsi0", size="+10G")
    assert (await driver.config(100))["scsi0"].endswith("size=30G")
    shrink = await driver.finish(
        await driver.call("PUT", "/nodes/pve1/qemu/100/resize", disk="scsi0", size="5G")
    )
    assert shrink["exitstatus"] == "shrinking disks is not supported"


async def test_create_refuses_a_used_vmid_and_allocates_disks(driver: SimDriver) -> None:
    taken = await driver.request("POST", "/nodes/pve2/qemu", vmid=9000)
    assert taken.json()["message"] == "unable to create VM 9000 - VM 9000 already exists on node 'pve1'\n"
    await driver.ok(
        "POST", "/nodes/pve2/qemu", vmid=200, name="fresh", memory=2048, scsi0="local-zfs:16", start=True
    )
    current = await driver.call("GET", "/nodes/pve2/qemu/200/status/current")
    assert current["status"] == "running" and current["maxdisk"] == 16 * GIB


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/nodes/pve9/qemu", 500, "hostname lookup 'pve9' failed"),
        ("/nodes/pve1/qemu/555/status/current", 500, "Configuration file 'nodes/pve1/qemu-server/555.conf'"),
        ("/no/such/path", 501, "Method 'GET /no/such/path' not implemented"),
    ],
)
async def test_errors_have_pve_status_and_wording(
    driver: SimDriver, path: str, status: int, message: str
) -> None:
    response = await driver.request("GET", path)
    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert response.json()["data"] is None


async def test_pool_roles_reach_pool_members_and_acls_die_with_the_guest(driver: SimDriver) -> None:
    await driver.call("POST", "/pools", poolid="team", comment="agents")
    await driver.clone(100, pool="team")
    await driver.clone(101)
    access = driver.sim.cluster.access
    access.apply_config({"users": [{"userid": "alice@pve", "password": "alice-pw-1"}]})
    access.set_acl("/pool/team", "alice@pve", "PVEVMUser")
    access.set_acl("/vms/101", "alice@pve", "PVEAuditor")
    secret = access.add_token("alice@pve", "t1")
    alice = {"Authorization": f"PVEAPIToken=alice@pve!t1={secret}"}
    seen = await driver.api.get("/nodes/pve1/qemu/100/status/current", headers=alice)
    assert seen.status_code == 200
    refused = await driver.api.post("/nodes/pve1/qemu/101/status/start", headers=alice)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Permission check failed (/vms/101, VM.PowerMgmt)\n"
    members = await driver.call("GET", "/pools", poolid="team")
    assert [m["vmid"] for m in members[0]["members"]] == [100]
    busy = await driver.request("DELETE", "/pools", poolid="team")
    assert busy.json()["message"] == "pool 'team' is not empty (contains VM 100)\n"
    await driver.ok("DELETE", "/nodes/pve1/qemu/101")
    assert not [e for e in access.acls if e.path == "/vms/101"]
