"""An unmodified third-party client (proxmoxer) cannot tell the served simulator from PVE."""

from __future__ import annotations

import time
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from tests.e2e.conftest import PASSWORD, TOKEN_NAME, TOKEN_SECRET, ServedSim

pytestmark = [
    pytest.mark.e2e,
    # The issue asks for proxmoxer with verify_ssl=False against the self-signed certificate.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


def password_client(sim: ServedSim) -> ProxmoxAPI:
    return ProxmoxAPI("127.0.0.1", port=sim.port, user="root@pam", password=PASSWORD, verify_ssl=False)


def token_client(sim: ServedSim) -> ProxmoxAPI:
    return ProxmoxAPI(
        "127.0.0.1", port=sim.port, user="root@pam", token_name=TOKEN_NAME, token_value=TOKEN_SECRET,
        verify_ssl=False,
    )  # fmt: skip


def wait(prox: ProxmoxAPI, upid: str) -> dict[str, Any]:
    """proxmoxer's own blocking poll on the UPID; the simulator runs at 200x, so polls are short."""
    status: dict[str, Any] = Tasks.blocking_status(prox, upid, timeout=60, polling_interval=0.05)
    assert status is not None, f"task {upid} did not finish"
    return status


@pytest.mark.parametrize("make_client", [password_client, token_client], ids=["password", "token"])
def test_proxmoxer_full_guest_lifecycle(served_sim: ServedSim, make_client: Any) -> None:
    prox = make_client(served_sim)
    assert prox.version.get()["version"].startswith("8.")
    assert {n["node"] for n in prox.nodes.get()} == {"pve1", "pve2", "pve3"}
    templates = [r for r in prox.cluster.resources.get(type="vm") if r.get("template")]
    assert {t["vmid"] for t in templates} >= {9000, 9001}

    vmid = int(prox.cluster.nextid.get())
    upid = prox.nodes("pve1").qemu(9000).clone.post(newid=vmid, name=f"e2e-{vmid}", full=1)
    assert Tasks.decode_upid(upid)["node"] == "pve1"
    assert wait(prox, upid)["exitstatus"] == "OK"

    vm = prox.nodes("pve1").qemu(vmid)
    assert vm.config.get()["name"] == f"e2e-{vmid}"
    vm.config.put(cores=4, memory=8192, description="set by proxmoxer")
    assert (vm.config.get()["cores"], vm.config.get()["memory"]) == (4, "8192")  # PVE 8: memory is a string

    assert wait(prox, vm.status.start.post())["exitstatus"] == "OK"
    assert vm.status.current.get()["status"] == "running"
    assert (
        wait(prox, vm.snapshot.post(snapname="pre_change", vmstate=1, description="e2e"))["exitstatus"]
        == "OK"
    )
    snaps = {s["name"]: s for s in vm.snapshot.get()}
    assert snaps["pre_change"]["vmstate"] == 1 and snaps["current"]["parent"] == "pre_change"
    vm.config.put(memory=2048)
    assert wait(prox, vm.snapshot("pre_change").rollback.post())["exitstatus"] == "OK"
    assert vm.config.get()["memory"] == "8192"
    assert vm.status.current.get()["status"] == "running"  # RAM state: it resumes
    assert wait(prox, vm.snapshot("pre_change").delete())["exitstatus"] == "OK"
    assert [s["name"] for s in vm.snapshot.get()] == ["current"]

    assert wait(prox, vm.status.stop.post())["exitstatus"] == "OK"
    assert wait(prox, vm.delete(purge=1))["exitstatus"] == "OK"
    assert vmid not in {r["vmid"] for r in prox.cluster.resources.get(type="vm")}


def test_proxmoxer_sees_pve_error_text_and_errors(served_sim: ServedSim) -> None:
    prox = token_client(served_sim)
    with pytest.raises(ResourceException) as bad:
        prox.nodes("pve1").qemu(9000).snapshot.post(snapname="bad name!")
    assert bad.value.status_code == 400
    assert bad.value.content == "Parameter verification failed."  # the reason phrase, as PVE sends it
    assert "snapname" in bad.value.errors
    with pytest.raises(ResourceException) as missing:
        prox.nodes("pve1").qemu(4242).status.current.get()
    assert missing.value.status_code == 500
    assert missing.value.content == "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist"


def test_task_failures_show_in_status_not_http(served_sim: ServedSim) -> None:
    prox = token_client(served_sim)
    vmid = int(prox.cluster.nextid.get())
    wait(prox, prox.nodes("pve1").qemu(9000).clone.post(newid=vmid))
    vm = prox.nodes("pve1").qemu(vmid)
    wait(prox, vm.status.start.post())
    status = wait(prox, vm.status.start.post())  # QEMU: "already running" is a task error
    assert status["status"] == "stopped" and status["exitstatus"] == f"VM {vmid} already running"
    log = prox.nodes("pve1").tasks(status["upid"]).log.get()
    assert log[-1]["t"] == f"TASK ERROR: VM {vmid} already running"
    wait(prox, vm.status.stop.post())
    wait(prox, vm.delete())


def test_wrong_password_is_refused(served_sim: ServedSim) -> None:
    from proxmoxer import AuthenticationError

    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        ProxmoxAPI("127.0.0.1", port=served_sim.port, user="root@pam", password="wrong", verify_ssl=False)
    assert time.monotonic() - started < 5


def test_proxmoxer_manages_ipsets_and_guest_firewall(served_sim: ServedSim) -> None:
    prox = token_client(served_sim)
    ipset = prox.cluster.firewall.ipset
    ipset.post(name="e2e-allow", comment="e2e")
    for cidr in ("10.9.0.0/16", "192.0.2.7", "fd00:9::/64"):
        ipset("e2e-allow").post(cidr=cidr, comment=f"entry {cidr}")
    assert [e["cidr"] for e in ipset("e2e-allow").get()] == ["10.9.0.0/16", "192.0.2.7", "fd00:9::/64"]
    ipset("e2e-allow")("10.9.0.0/16").delete()  # proxmoxer sends the slash as is
    assert {e["cidr"] for e in ipset("e2e-allow").get()} == {"192.0.2.7", "fd00:9::/64"}

    vmid = int(prox.cluster.nextid.get())
    wait(prox, prox.nodes("pve1").qemu(9000).clone.post(newid=vmid, name=f"fw-{vmid}"))
    firewall = prox.nodes("pve1").qemu(vmid).firewall
    firewall.options.put(enable=1, policy_in="DROP", policy_out="ACCEPT", dhcp=1)
    firewall.rules.post(type="out", action="ACCEPT", dest="+e2e-allow", proto="tcp", dport="443", enable=1)
    firewall.rules.post(type="in", action="ACCEPT", macro="SSH", comment="ssh in", enable=1)
    options = firewall.options.get()
    assert (options["enable"], options["policy_in"], options["dhcp"]) == (1, "DROP", 1)
    rules = firewall.rules.get()
    assert [(r["pos"], r["type"], r.get("macro"), r.get("dest")) for r in rules] == [
        (0, "in", "SSH", None),
        (1, "out", None, "+e2e-allow"),
    ]
    with pytest.raises(ResourceException) as refused:
        firewall.rules.post(type="out", action="ACCEPT", dest="+nosuch")
    assert refused.value.status_code == 400 and "dest" in refused.value.errors
    wait(prox, prox.nodes("pve1").qemu(vmid).delete())
    ipset("e2e-allow").delete(force=1)
