"""Network profiles (validation), the rules they render to, drift and the rule plan (pure)."""

from __future__ import annotations

import pytest

from autovibe.network.firewall import Live, Rule, desired, drift, plan_rules, set_name
from autovibe.network.profiles import (
    SEED_PROFILES,
    NetworkProfileInvalid,
    NetworkProfileNotFound,
    get_profile,
    load_profiles,
    parse_allow,
)

RESOLVED = {"api.anthropic.com": ["160.79.104.10", "2607:6bc0::10"], "api.openai.com": ["162.159.140.245"]}
SYMBOLS = {"@pve": ["192.168.100.11", "192.168.100.12"], "@hub": ["10.0.0.10"]}


@pytest.mark.parametrize(
    ("entry", "why"),
    [("10.0.0.0/33", "not an IP address or CIDR"), ("api.x.com:70000", "1-65535"),
     ("api.x.com", "needs a port"), ("10.0.0.1/8", "host bits set"), ("bad_host!:443", "not a host name"),
     ("@hub", "needs a port"), ("10.0.0.0/8:0", "1-65535"), ("host/udp", "needs a port")],
)  # fmt: skip
def test_bad_allow_entries_are_refused(entry: str, why: str) -> None:
    with pytest.raises(NetworkProfileInvalid, match=why):
        parse_allow(entry)


def test_profiles_from_settings_are_validated_and_merge_with_seeds() -> None:
    profiles = load_profiles(
        {"api_access": {"vlan": 42}, "lab": {"bridge": "vmbr2", "allow": ["10.1.0.0/16"]}}
    )
    assert profiles["api_access"].vlan == 42 and profiles["api_access"].bridge == "vmbr1"
    assert profiles["lab"].policy_out == "DROP" and profiles["lab"].isolating
    with pytest.raises(NetworkProfileInvalid, match=r"^network profile 'lab': allow entry '10\.0\.0\.0/33'"):
        load_profiles({"lab": {"bridge": "vmbr2", "allow": ["10.0.0.0/33"]}})
    with pytest.raises(NetworkProfileInvalid, match="vlan"):
        load_profiles({"lab": {"bridge": "vmbr2", "vlan": 5000}})
    with pytest.raises(NetworkProfileInvalid, match="bridge"):
        load_profiles({"lab": {"bridge": "not a bridge"}})
    with pytest.raises(NetworkProfileNotFound, match="no network profile 'nope'"):
        get_profile(profiles, "nope")


def test_api_access_renders_guard_first_then_dns_dhcp_and_allows() -> None:
    want = desired(SEED_PROFILES["api_access"], resolved=RESOLVED, symbols=SYMBOLS)
    comments = [r.comment.removeprefix("autovibe:api_access:") for r in want.rules]
    assert comments == [
        "guard pve-api", "guard pve-ssh", "guard link-local", "dns 10.0.0.53", "dns 10.0.0.53",
        "guard other-dns", "guard other-dns", "dhcp", "allow api.anthropic.com:443",
        "allow api.openai.com:443", "allow api.github.com:443", "allow @hub:8000",
    ]  # fmt: skip
    assert want.rules[0] == Rule(
        "out", "DROP", "autovibe:api_access:guard pve-api", "tcp", "+autovibe-pve-nodes", "8006"
    )
    assert want.ipsets["autovibe-api-anthropic-com"] == {"160.79.104.10", "2607:6bc0::10"}
    assert want.ipsets["autovibe-api-github-com"] == frozenset()  # unresolved: matches nothing
    assert want.ipsets["autovibe-pve-nodes"] == {"192.168.100.11", "192.168.100.12"}
    assert want.options == {"enable": 1, "policy_in": "DROP", "policy_out": "DROP", "dhcp": 1}
    assert any("api.github.com has no addresses" in n for n in want.notes)


def test_management_access_has_no_host_guard() -> None:
    want = desired(SEED_PROFILES["management_access"], resolved=RESOLVED, symbols=SYMBOLS)
    assert not any("guard" in r.comment for r in want.rules)
    assert (
        Rule("out", "ACCEPT", "autovibe:management_access:allow 10.0.0.0/8", None, "10.0.0.0/8") in want.rules
    )
    assert want.ipsets["autovibe-pve-nodes"] == {"192.168.100.11", "192.168.100.12"}  # @pve:8006 allowed


def test_set_names_fit_pve_rules() -> None:
    long = "a" * 80 + ".example.com"
    assert set_name("api.anthropic.com") == "autovibe-api-anthropic-com"
    assert len(set_name(long)) == 64 and set_name(long) != set_name(long + "x")


def live_from(want_rules: list[Rule], user: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
    rules = [{**r.params(), "pos": i} for i, r in enumerate(want_rules)]
    return [*rules, *[{**u, "pos": len(rules) + i} for i, u in enumerate(user or [])]]


def test_drift_sees_missing_extra_order_policy_bridge_and_members() -> None:
    want = desired(SEED_PROFILES["api_access"], resolved=RESOLVED, symbols=SYMBOLS)
    user = [{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "comment": "my ssh"}]
    ok = Live(
        "virtio=AA:BB,bridge=vmbr1,firewall=1", want.options, live_from(list(want.rules), user), want.ipsets
    )
    assert drift(want, ok) == []
    evil = {"type": "out", "action": "ACCEPT", "comment": "autovibe:api_access:allow evil", "dest": "6.6.6.6"}
    bad_rules = [*live_from(list(want.rules[1:]), user), {**evil, "pos": 99}]
    bad = Live(
        "virtio=AA:BB,bridge=vmbr0,firewall=0",
        {**want.options, "policy_out": "ACCEPT"},
        bad_rules,
        {k: v for k, v in want.ipsets.items() if k != "autovibe-pve-nodes"}
        | {"autovibe-api-openai-com": frozenset()},
    )
    kinds = sorted({d.kind for d in drift(want, bad)})
    assert kinds == [
        "extra-rule",
        "firewall-off",
        "ipset-members",
        "missing-ipset",
        "missing-rule",
        "option",
        "wrong-bridge",
    ]
    reordered = Live(ok.net0, ok.options, live_from(list(reversed(want.rules)), user), want.ipsets)
    assert [d.kind for d in drift(want, reordered)] == ["rule-order"]
    under_user = Live(
        ok.net0, ok.options, [{**user[0], "pos": 0}, *live_from(list(want.rules))[0:]], want.ipsets
    )
    assert [d.kind for d in drift(want, under_user)] == ["rule-order"]


def test_rule_plan_inserts_on_top_then_deletes_only_old_autovibe_rules() -> None:
    want = list(desired(SEED_PROFILES["api_access"], resolved=RESOLVED, symbols=SYMBOLS).rules)
    user = {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "comment": "my ssh"}
    assert plan_rules(want, live_from(want, [user])) == plan_rules(want, live_from(want))  # nothing to do
    assert not plan_rules(want, live_from(want, [user])).insert
    old = [
        {"type": "out", "action": "ACCEPT", "comment": "autovibe:api_access:allow old", "pos": 0},
        {**user, "pos": 1},
        {"type": "out", "action": "DROP", "comment": "autovibe:api_access:guard old", "pos": 2},
    ]
    plan = plan_rules(want, old)
    assert plan.insert == want
    assert plan.delete_positions == [2 + len(want), 0 + len(want)]  # the user's rule (1) stays
