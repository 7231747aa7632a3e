"""The simulated firewall answers like pve-firewall: options, rules, IP sets, aliases, groups, networks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.sim.app import SimApp
from tests.fakes.simulated import SimDriver

VM = "/nodes/pve1/qemu/100/firewall"
FW = "/cluster/firewall"
MODIFIED = "detected modified configuration - file changed by other user? Try again.\n"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


async def _errors(driver: SimDriver, method: str, path: str, **params: Any) -> dict[str, str]:
    response = await driver.request(method, path, **params)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Parameter verification failed.\n"
    errors: dict[str, str] = response.json()["errors"]
    return errors


async def _failure(driver: SimDriver, method: str, path: str, **params: Any) -> str:
    response = await driver.request(method, path, **params)
    assert response.status_code == 500, response.text
    message: str = response.json()["message"]
    return message


# ---- options -------------------------------------------------------------------------------------------
async def test_options_show_only_what_was_set_with_a_digest_over_it(driver: SimDriver) -> None:
    assert await driver.call("GET", f"{FW}/options") == {"digest": _sha1("")}
    await driver.call("PUT", f"{FW}/options", enable=1, policy_in="DROP", ebtables=0)
    options = await driver.call("GET", f"{FW}/options")
    assert options == {
        "enable": 1,
        "ebtables": 0,
        "policy_in": "DROP",
        "digest": _sha1("ebtables:0\nenable:1\npolicy_in:DROP\n"),
    }
    stale = await _failure(driver, "PUT", f"{FW}/options", policy_out="REJECT", digest=_sha1("other"))
    assert stale == MODIFIED
    await driver.call("PUT", f"{FW}/options", delete="policy_in,ebtables", digest=options["digest"])
    assert await driver.call("GET", f"{FW}/options") == {"enable": 1, "digest": _sha1("enable:1\n")}
    assert await _errors(driver, "PUT", f"{FW}/options", delete="dhcp") == {"delete": "no such option 'dhcp'"}
    # Cluster.pm: an `enable` above 1 is replaced by the current time (the GUI's anti-lockout call).
    await driver.call("PUT", f"{FW}/options", enable=2)
    assert (await driver.call("GET", f"{FW}/options"))["enable"] == int(driver.sim.clock.now())


async def test_guest_and_node_options_are_stored_as_pve_parses_them(driver: SimDriver) -> None:
    await driver.call("PUT", f"{VM}/options", enable=True, dhcp=False, policy_in="DROP", log_level_in="info")
    options = await driver.call("GET", f"{VM}/options")
    assert {k: v for k, v in options.items() if k != "digest"} == {
        "enable": 1,
        "dhcp": 0,
        "policy_in": "DROP",
        "log_level_in": "info",
    }
    assert await _errors(driver, "PUT", f"{VM}/options", policy_in="ALLOW") == {
        "policy_in": "value 'ALLOW' does not have a value in the enumeration 'ACCEPT, REJECT, DROP'"
    }
    await driver.call("PUT", "/nodes/pve2/firewall/options", enable=0, nf_conntrack_max=65536)
    node = await driver.call("GET", "/nodes/pve2/firewall/options")
    assert (node["enable"], node["nf_conntrack_max"]) == (0, 65536)
    assert await driver.call("GET", "/nodes/pve1/firewall/options") == {"digest": _sha1("")}


# ---- rules ---------------------------------------------------------------------------------------------
async def test_new_rules_go_to_the_top_disabled_unless_enabled_and_pos_is_ignored(driver: SimDriver) -> None:
    await driver.call("POST", f"{VM}/rules", type="in", action="ACCEPT", proto="tcp", dport="22", enable=1)
    await driver.call(
        "POST", f"{VM}/rules", type="out", action="DROP", dest="10.0.0.0/8", pos=5, comment=" x "
    )
    rules = await driver.call("GET", f"{VM}/rules")
    digest = rules[0]["digest"]
    assert rules == [
        {
            "pos": 0,
            "type": "out",
            "action": "DROP",
            "dest": "10.0.0.0/8",
            "enable": 0,
            "ipversion": 4,
            "comment": "x",
            "digest": digest,
        },
        {
            "pos": 1,
            "type": "in",
            "action": "ACCEPT",
            "proto": "tcp",
            "dport": "22",
            "enable": 1,
            "digest": digest,
        },
    ]
    text = "action:DROP\ncomment:x\ndest:10.0.0.0/8\nenable:0\nipversion:4\ntype:out\n"
    text += "action:ACCEPT\ndport:22\nenable:1\nproto:tcp\ntype:in\n"
    assert digest == _sha1(text)
    assert await driver.call("GET", f"{VM}/rules/1") == rules[1]
    assert await _failure(driver, "GET", f"{VM}/rules/2") == "no rule at position 2\n"


async def _rule_comments(driver: SimDriver, path: str) -> list[str]:
    return [rule["comment"] for rule in await driver.call("GET", path)]


async def test_rules_move_edit_and_delete_by_position(driver: SimDriver) -> None:
    for name in "DCBA":
        await driver.call("POST", f"{FW}/rules", type="in", action="ACCEPT", comment=name)
    assert await _rule_comments(driver, f"{FW}/rules") == ["A", "B", "C", "D"]
    # PVE re-inserts the rule before the old index `moveto`: moving down lands one place higher.
    await driver.call("PUT", f"{FW}/rules/0", moveto=2, comment="ignored")
    assert await _rule_comments(driver, f"{FW}/rules") == ["B", "A", "C", "D"]
    await driver.call("PUT", f"{FW}/rules/3", moveto=0)
    assert await _rule_comments(driver, f"{FW}/rules") == ["D", "B", "A", "C"]
    await driver.call("PUT", f"{FW}/rules/1", moveto=99)
    assert await _rule_comments(driver, f"{FW}/rules") == ["D", "A", "C", "B"]
    await driver.call("PUT", f"{FW}/rules/0", proto="udp", sport="53", log="info", enable=1)
    edited = await driver.call("GET", f"{FW}/rules/0")
    assert (edited["proto"], edited["sport"], edited["log"], edited["enable"]) == ("udp", "53", "info", 1)
    await driver.call("PUT", f"{FW}/rules/0", delete="sport,log", comment="-")
    edited = await driver.call("GET", f"{FW}/rules/0")
    assert "sport" not in edited and "log" not in edited and "comment" not in edited
    assert await _errors(driver, "PUT", f"{FW}/rules/0", delete="action") == {
        "delete": "unable to delete required property 'action'"
    }
    assert await _failure(driver, "DELETE", f"{FW}/rules/1", digest=_sha1("x")) == MODIFIED
    await driver.call("DELETE", f"{FW}/rules/1", digest=edited["digest"])
    assert len(await driver.call("GET", f"{FW}/rules")) == 3
    assert await _failure(driver, "DELETE", f"{FW}/rules/3") == "no rule at position 3\n"


PREFIX_ERROR = "invalid format - invalid IP address: Invalid prefix 00001010000000000000000000000001/24\n"
RULE_CHECKS = [
    ({"dport": "80"}, {"proto": "missing property - 'dport' requires this property"}),
    ({"proto": "gre", "dport": "80"}, {"dport": "protocol 'gre' does not support ports"}),
    ({"proto": "icmp", "sport": "80"}, {"sport": "protocol 'icmp' does not support ports"}),
    ({"proto": "tcp", "dport": "70000"}, {"dport": "invalid format - invalid port '70000'\n"}),
    ({"proto": "tcp", "dport": "80:90,443,no"}, {"dport": "invalid format - invalid port 'no'\n"}),
    (
        {"proto": "tcp", "icmp-type": "echo-request"},
        {"proto": "missing property - 'icmp-type' requires this property"},
    ),
    ({"action": "ALLOW"}, {"action": "unknown action 'ALLOW'"}),
    ({"type": "forward"}, {"type": "invalid rule type 'forward' for rule_env 'vm'"}),
    ({"iface": "eth0"}, {"iface": "value does not match the regex pattern 'net\\d+'"}),
    ({"source": "+nosuch"}, {"source": "no such ipset 'nosuch'"}),
    ({"dest": "dc/nosuch"}, {"dest": "no such alias 'dc/nosuch'"}),
    ({"source": "10.0.0.1", "dest": "fd00::1"}, {"dest": "detected mixed ipv4/ipv6 addresses in rule"}),
    ({"source": "10.0.0.1/24"}, {"source": PREFIX_ERROR}),
    (
        {"source": "10.0.0.1-10.0.0.9,10.1.0.1"},
        {"source": "invalid format - you can't use a range in a list\n"},
    ),
    (
        {"macro": "ssh", "proto": "tcp", "dport": "2222"},
        {"dport": "parameter 'dport' already define in macro (value = '22')"},
    ),
    ({"macro": "Nope"}, {"macro": "unknown macro 'Nope'"}),
]


@pytest.mark.parametrize(("params", "errors"), RULE_CHECKS)
async def test_rule_checks_answer_400_with_pves_words(
    driver: SimDriver, params: dict[str, str], errors: dict[str, str]
) -> None:
    assert (
        await _errors(driver, "POST", f"{VM}/rules", **{"type": "in", "action": "ACCEPT", **params}) == errors
    )
    assert await driver.call("GET", f"{VM}/rules") == []


async def test_macros_are_canonicalised_and_icmp_types_accepted(driver: SimDriver) -> None:
    await driver.call("POST", f"{VM}/rules", type="in", action="ACCEPT", macro="ssh", source="192.0.2.0/24")
    await driver.call(
        "POST", f"{VM}/rules", type="in", action="ACCEPT", proto="icmp", **{"icmp-type": "echo-request"}
    )
    await driver.call("POST", f"{VM}/rules", type="group", action="webservers", iface="net0")
    group, icmp, ssh = await driver.call("GET", f"{VM}/rules")
    assert ssh["macro"] == "SSH" and ssh["ipversion"] == 4
    assert icmp["icmp-type"] == "echo-request" and icmp["ipversion"] == 4
    assert (group["type"], group["action"], group["iface"]) == ("group", "webservers", "net0")
    macros = {m["macro"]: m["descr"] for m in await driver.call("GET", f"{FW}/macros")}
    assert macros["SSH"] == "Secure shell traffic"


# ---- IP sets -------------------------------------------------------------------------------------------
async def test_ipsets_hold_v4_and_v6_entries_sorted_without_duplicates(driver: SimDriver) -> None:
    await driver.call("POST", f"{FW}/ipset", name="Office", comment="the office")
    assert await _errors(driver, "POST", f"{FW}/ipset", name="office") == {
        "name": "IPSet 'office' already exists"
    }
    sets = await driver.call("GET", f"{FW}/ipset")
    assert sets == [{"name": "office", "comment": "the office", "digest": sets[0]["digest"]}]  # lower-cased
    for cidr in ("10.0.0.5/32", "fd00:1::/64", "192.168.0.0/16", "2001:db8::1"):
        await driver.call("POST", f"{FW}/ipset/office", cidr=cidr)
    assert await _errors(driver, "POST", f"{FW}/ipset/office", cidr="10.0.0.5") == {
        "cidr": "address '10.0.0.5' already exists"
    }
    assert await _errors(driver, "POST", f"{FW}/ipset/office", cidr="0.0.0.0/0") == {
        "cidr": "a zero prefix is not allowed in ipset entries"
    }
    entries = await driver.call("GET", f"{FW}/ipset/office")
    assert [e["cidr"] for e in entries] == ["10.0.0.5", "192.168.0.0/16", "2001:db8::1", "fd00:1::/64"]
    # The entry's CIDR may come URL-encoded or with a bare slash: PVE takes the rest of the path.
    encoded = await driver.call("GET", f"{FW}/ipset/office/192.168.0.0%2F16")
    assert encoded == await driver.call("GET", f"{FW}/ipset/office/192.168.0.0/16")
    assert encoded == {"cidr": "192.168.0.0/16", "digest": entries[0]["digest"]}
    await driver.call("PUT", f"{FW}/ipset/office/fd00:1::%2F64", nomatch=1, comment="not this one")
    assert (await driver.call("GET", f"{FW}/ipset/office/fd00:1::/64"))["nomatch"] == 1
    await driver.call("DELETE", f"{FW}/ipset/office/192.168.0.0/16")
    assert await _errors(driver, "GET", f"{FW}/ipset/office/192.168.0.0/16") == {"cidr": "no such IP/Network"}
    assert await _failure(driver, "GET", f"{FW}/ipset/Office") == "no such IPSet 'Office'\n"
    assert await _failure(driver, "DELETE", f"{FW}/ipset/office") == "IPSet 'office' is not empty\n"
    await driver.call("POST", f"{FW}/ipset", name="branch", rename="office")
    assert [s["name"] for s in await driver.call("GET", f"{FW}/ipset")] == ["branch"]
    await driver.call("DELETE", f"{FW}/ipset/branch", force=1)
    assert await driver.call("GET", f"{FW}/ipset") == []


async def test_rules_need_the_ipsets_they_name_and_show_errors_when_they_vanish(driver: SimDriver) -> None:
    rule = {"type": "out", "action": "ACCEPT", "dest": "+office", "enable": 1}
    assert await _errors(driver, "POST", f"{VM}/rules", **rule) == {"dest": "no such ipset 'office'"}
    await driver.call("POST", f"{VM}/ipset", name="office")  # the guest's own set counts
    await driver.call("POST", f"{VM}/rules", **rule)
    await driver.call("POST", f"{FW}/ipset", name="dc-set")
    await driver.call("POST", f"{VM}/rules", **{**rule, "dest": "+dc/dc-set"})
    # PVE does not refuse to delete a set a rule uses; the rule then carries the error.
    await driver.call("DELETE", f"{VM}/ipset/office")
    stale = (await driver.call("GET", f"{VM}/rules"))[1]
    assert stale["errors"] == {"dest": "no such ipset 'office'"}
    refs = await driver.call("GET", f"{VM}/refs", type="ipset")
    assert refs == [{"type": "ipset", "name": "dc-set", "ref": "+dc/dc-set", "scope": "dc"}]


async def test_aliases_resolve_in_rules_and_ipsets(driver: SimDriver) -> None:
    await driver.call("POST", f"{FW}/aliases", name="Gateway", cidr="fd00::1/128", comment="gw")
    assert await _errors(driver, "POST", f"{FW}/aliases", name="gateway", cidr="10.0.0.1") == {
        "name": "alias 'gateway' already exists"
    }
    aliases = await driver.call("GET", f"{FW}/aliases")
    assert aliases == [
        {
            "name": "Gateway",
            "cidr": "fd00::1",
            "ipversion": 6,
            "comment": "gw",
            "digest": aliases[0]["digest"],
        }
    ]
    await driver.call("POST", f"{VM}/rules", type="out", action="ACCEPT", dest="gateway")
    assert (await driver.call("GET", f"{VM}/rules/0"))["ipversion"] == 6
    await driver.call("POST", f"{FW}/ipset", name="gws")
    await driver.call("POST", f"{FW}/ipset/gws", cidr="dc/gateway")
    assert await _failure(driver, "POST", f"{FW}/ipset/gws", cidr="nosuch") == "no such alias 'nosuch'\n"
    await driver.call("PUT", f"{FW}/aliases/gateway", cidr="10.0.0.1", rename="gw4")
    refs = await driver.call("GET", f"{FW}/refs")
    assert refs == [
        {"type": "ipset", "name": "gws", "ref": "+dc/gws", "scope": "dc"},
        {"type": "alias", "name": "gw4", "ref": "dc/gw4", "scope": "dc"},
    ]
    assert await _errors(driver, "GET", f"{FW}/aliases/gateway") == {"name": "no such alias"}


# ---- security groups -----------------------------------------------------------------------------------
async def test_security_groups_hold_rules_and_renames_follow_their_users(driver: SimDriver) -> None:
    await driver.call("POST", f"{FW}/groups", group="Web", comment="web servers")
    await driver.call("POST", f"{FW}/groups/web", type="in", action="ACCEPT", macro="HTTPS", enable=1)
    assert await _errors(driver, "POST", f"{FW}/groups/web", type="in", action="ACCEPT", iface="eth0") == {
        "type": "parameter -i not allowed for this rule type"
    }
    await driver.call("POST", f"{VM}/rules", type="group", action="web", enable=1)
    groups = await driver.call("GET", f"{FW}/groups")
    assert [(g["group"], g["comment"]) for g in groups] == [("web", "web servers")]
    assert await _failure(driver, "DELETE", f"{FW}/groups/web") == "Security group 'web' is not empty\n"
    await driver.call("POST", f"{FW}/groups", group="frontend", rename="web")
    assert (await driver.call("GET", f"{VM}/rules/0"))["action"] == "frontend"
    assert (await driver.call("GET", f"{FW}/groups/frontend/0"))["macro"] == "HTTPS"
    assert await _failure(driver, "GET", f"{FW}/groups/web") == "no such security group 'web'\n"


# ---- lifecycle, persistence, permissions ---------------------------------------------------------------
async def test_guest_firewall_follows_clones_and_dies_with_the_guest(driver: SimDriver) -> None:
    await driver.clone(100, full=True)
    await driver.call("PUT", f"{VM}/options", enable=1)
    await driver.call("POST", f"{VM}/rules", type="in", action="ACCEPT", proto="tcp", dport="22")
    await driver.clone(101, source=100)
    copied = await driver.call("GET", "/nodes/pve1/qemu/101/firewall/rules")
    assert [r["dport"] for r in copied] == ["22"]
    await driver.ok("DELETE", "/nodes/pve1/qemu/100")
    assert 100 not in driver.sim.cluster.firewall.guests
    assert await driver.call("GET", f"{VM}/rules") == []
    assert await driver.call("GET", f"{VM}/options") == {"digest": _sha1("")}


async def test_firewall_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "cluster.json"
    sim = SimApp.open(state, speed=0)
    async with _client(sim) as driver:
        await driver.call("PUT", f"{FW}/options", enable=1)
        await driver.call("POST", f"{FW}/ipset", name="office")
        await driver.call("POST", f"{FW}/ipset/office", cidr="fd00::/64")
        await driver.call("POST", f"{VM}/rules", type="out", action="ACCEPT", dest="+office")
        before = [await driver.call("GET", p) for p in (f"{FW}/options", f"{FW}/ipset/office", f"{VM}/rules")]
    reopened = SimApp.open(state, speed=0)
    async with _client(reopened) as driver:
        after = [await driver.call("GET", p) for p in (f"{FW}/options", f"{FW}/ipset/office", f"{VM}/rules")]
    assert after == before


def _client(sim: SimApp) -> _Driving:
    return _Driving(sim)


class _Driving:
    """``async with _client(sim) as driver``: a root token driver on ``sim``."""

    def __init__(self, sim: SimApp) -> None:
        self.sim = sim
        self.http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> SimDriver:
        token = self.sim.ensure_token("root@pam", "test")
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sim),
            base_url="https://pve1:8006/api2/json",
            headers={"Authorization": f"PVEAPIToken={token}"},
        )
        return SimDriver(self.sim, self.http)

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.aclose()


async def test_permissions_come_from_the_schema(driver: SimDriver) -> None:
    access = driver.sim.cluster.access
    access.apply_config({"users": [{"userid": "alice@pve", "password": "alice-pw-1"}]})
    access.set_acl("/", "alice@pve", "PVEAuditor")
    access.set_acl("/vms/100", "alice@pve", "PVEVMUser")
    alice = {"Authorization": f"PVEAPIToken=alice@pve!t1={access.add_token('alice@pve', 't1')}"}
    assert (await driver.api.get(f"{FW}/options", headers=alice)).status_code == 200
    assert (await driver.api.get(f"{VM}/rules", headers=alice)).status_code == 200
    refused = await driver.api.put(f"{FW}/options", data={"enable": 1}, headers=alice)
    assert (refused.status_code, refused.json()["message"]) == (
        403,
        "Permission check failed (/, Sys.Modify)\n",
    )
    refused = await driver.api.post(f"{VM}/rules", data={"type": "in", "action": "DROP"}, headers=alice)
    assert refused.json()["message"] == "Permission check failed (/vms/100, VM.Config.Network)\n"
    refused = await driver.api.post(f"{FW}/ipset", data={"name": "x1"}, headers=alice)
    assert refused.status_code == 403


# ---- node networks -------------------------------------------------------------------------------------
async def test_nodes_have_a_management_and_an_isolated_bridge(driver: SimDriver) -> None:
    status = await driver.call("GET", "/cluster/status")
    assert {e["name"]: e["ip"] for e in status if e["type"] == "node"} == {
        "pve1": "192.168.100.11",
        "pve2": "192.168.100.12",
        "pve3": "192.168.100.13",
    }
    interfaces = {i["iface"]: i for i in await driver.call("GET", "/nodes/pve2/network")}
    assert set(interfaces) == {"eno1", "vmbr0", "vmbr1"}
    management = interfaces["vmbr0"]
    assert (management["address"], management["cidr"]) == ("192.168.100.12", "192.168.100.12/24")
    assert management["bridge_ports"] == "eno1" and management["type"] == "bridge"
    assert "address" not in interfaces["vmbr1"] and interfaces["vmbr1"]["bridge_ports"] == "none"
    bridges = await driver.call("GET", "/nodes/pve2/network", type="any_bridge")
    assert [b["iface"] for b in bridges] == ["vmbr0", "vmbr1"]
    assert (await driver.call("GET", "/nodes/pve2/network/vmbr1"))["method"] == "manual"
    assert await _errors(driver, "GET", "/nodes/pve2/network/vmbr9") == {"iface": "interface does not exist"}


async def test_a_guest_on_a_missing_bridge_fails_to_start(driver: SimDriver) -> None:
    await driver.clone(100)
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", net1="virtio,bridge=vmbr9")
    upid = await driver.call("POST", "/nodes/pve1/qemu/100/status/start")
    assert (await driver.finish(upid))["exitstatus"] == "start failed: QEMU exited with code 1"
    log = [line["t"] for line in await driver.call("GET", f"/nodes/pve1/tasks/{upid}/log")]
    assert "bridge 'vmbr9' does not exist" in log
    await driver.call("PUT", "/nodes/pve1/qemu/100/config", net1="virtio,bridge=vmbr1")
    await driver.ok("POST", "/nodes/pve1/qemu/100/status/start")
