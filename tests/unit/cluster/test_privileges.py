"""The privilege table: derived from PVE's permission rules for the calls autovibe's code makes."""

from __future__ import annotations

import importlib.util
import re
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from autovibe.cluster.privileges import (
    ADMIN_ENDPOINTS,
    DATA_FILE,
    HANDLER_CHECKS,
    USED_ENDPOINTS,
    HandlerCheck,
    Rule,
    UnknownRule,
    Use,
    access_plan,
    acl_path,
    admin_requirements,
    by_acl_path,
    required_grants,
    requirements,
    resolve,
    schema_rules,
    unmet,
)

REPO = Path(__file__).resolve().parents[3]
GENERATOR = REPO / "scripts" / "gen_privileges.py"
SRC = REPO / "src" / "autovibe"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_privileges", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def granted() -> dict[str, tuple[str, ...]]:
    return {grant.path: grant.privileges for grant in required_grants()}


# ---- the generated data ------------------------------------------------------------------------


def test_shipped_rules_match_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / DATA_FILE
    assert _load_generator().main(["--out", str(out)]) == 0
    shipped = resources.files("autovibe.cluster").joinpath(DATA_FILE)
    assert shipped.read_bytes() == out.read_bytes(), (
        f"{DATA_FILE} is stale; run python scripts/gen_privileges.py"
    )


def test_every_listed_endpoint_has_a_rule_and_takes_api_tokens() -> None:
    rules = schema_rules()
    for use in (*USED_ENDPOINTS, *ADMIN_ENDPOINTS):
        assert use.key in rules, use.key
        assert rules[use.key].allowtoken, f"{use.key} refuses API tokens"
    for method, path in HANDLER_CHECKS:
        assert f"{method} {path}" in rules, "a handler check for an endpoint autovibe does not call"


# ---- the table matches the code ----------------------------------------------------------------

_CALL = re.compile(
    r"\bpve(?:_client)?\.(get|post|put|delete|get_with_total)\(\s*(?:#[^\n]*\n\s*)?f?\"([^\"]+)\""
)
_READER = re.compile(r"\bpve(?:_client)?\.(\w+)\(")
# The client's typed readers and what they call.
READERS = {
    "version": [("GET", "/version")],
    "nodes": [("GET", "/nodes")],
    "cluster_resources": [("GET", "/cluster/resources")],
    "next_vmid": [("GET", "/cluster/nextid")],
    "permissions": [("GET", "/access/permissions")],
    "task_status": [("GET", "/nodes/{node}/tasks/{upid}/status")],
    "task_log": [("GET", "/nodes/{node}/tasks/{upid}/log")],
    "task_log_tail": [("GET", "/nodes/{node}/tasks/{upid}/log")],
    "wait_task": [("GET", "/nodes/{node}/tasks/{upid}/status"), ("GET", "/nodes/{node}/tasks/{upid}/log")],
}
_RAW = {"get", "post", "put", "delete", "get_with_total", "request"}


def _templates() -> set[tuple[str, str]]:
    return {(use.method, use.path) for use in (*USED_ENDPOINTS, *ADMIN_ENDPOINTS)}


def _matches(method: str, code_path: str, templates: set[tuple[str, str]]) -> bool:
    """A code path (f-string fields as ``{...}``, which may stand for several segments) against the
    schema templates."""
    pattern = re.compile("".join(".+" if p.startswith("{") else re.escape(p) for p in _split(code_path)))
    for wanted, template in templates:
        if wanted != method:
            continue
        sample = re.sub(r"\{[^}]+\}", "X", template)
        literal = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)))
        if pattern.fullmatch(sample) or literal.fullmatch(re.sub(r"\{[^}]+\}", "X", code_path)):
            return True
    return False


def _split(path: str) -> list[str]:
    return [part for part in re.split(r"(\{[^}]*\})", path) if part]


def _source_files() -> list[Path]:
    # The simulator serves PVE and the client is generic: neither is autovibe calling PVE.
    return [f for f in sorted(SRC.rglob("*.py")) if f.relative_to(SRC).parts[0] not in ("sim", "pve")]


def test_every_pve_call_in_the_code_is_in_the_table() -> None:
    templates = _templates()
    unlisted = []
    seen = 0
    for file in _source_files():
        text = file.read_text()
        for match in _CALL.finditer(text):
            seen += 1
            method = "GET" if match.group(1) == "get_with_total" else match.group(1).upper()
            if not _matches(method, match.group(2), templates):
                unlisted.append(f"{file.relative_to(SRC)}: {method} {match.group(2)}")
        for match in _READER.finditer(text):
            for key in READERS.get(match.group(1), []):
                if key not in templates:
                    unlisted.append(f"{file.relative_to(SRC)}: {match.group(1)}() -> {key}")
    assert seen > 40  # the scan still finds the calls
    assert unlisted == [], "add these to USED_ENDPOINTS, then run python scripts/gen_privileges.py"


def test_the_matcher_tells_paths_apart() -> None:
    templates = {("GET", "/nodes/{node}/qemu/{vmid}/snapshot"), ("POST", "/nodes/{node}/qemu/{vmid}/clone")}
    assert _matches("GET", "{target.path}/snapshot", templates)
    assert _matches("GET", "/nodes/pve1/qemu/100/snapshot", templates)
    assert _matches("POST", "/nodes/{p['node']}/qemu/{vmid}/clone", templates)
    assert not _matches("POST", "{target.path}/snapshot", templates)
    assert not _matches("GET", "{target.path}/snapshot/{name}/config", templates)


# ---- the derivation ----------------------------------------------------------------------------


def test_the_derived_grants_per_acl_path() -> None:
    assert granted() == {
        "/vms": (
            "VM.Allocate",
            "VM.Audit",
            "VM.Clone",
            "VM.Config.CPU",
            "VM.Config.Disk",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.Options",
            "VM.PowerMgmt",
            "VM.Snapshot",
        ),
        "/storage": ("Datastore.AllocateSpace", "Datastore.Audit"),
        "/nodes": ("Sys.Audit",),
        "/sdn/zones": ("SDN.Use",),
        "/": ("Sys.Audit", "Sys.Modify"),
    }
    assert [(g.path, g.propagate) for g in required_grants()][-1] == ("/", False)
    assert all(g.propagate for g in required_grants() if g.path != "/")


def test_rollback_needs_no_privilege_of_its_own() -> None:
    # POST .../rollback accepts VM.Snapshot or VM.Snapshot.Rollback; VM.Snapshot is needed anyway.
    rule = schema_rules()["POST /nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback"].permissions
    assert rule["check"][2] == ["VM.Snapshot", "VM.Snapshot.Rollback"]
    assert "VM.Snapshot.Rollback" not in granted()["/vms"]
    assert "VM.Backup" not in granted()["/vms"]  # autovibe makes no vzdump call


def test_features_are_credited_to_what_they_send() -> None:
    vms = next(g for g in required_grants() if g.path == "/vms")
    assert vms.used_for["VM.Config.Network"] == ("machines", "network profiles")
    assert "network profiles" not in vms.used_for["VM.Config.Disk"]
    assert vms.used_for["VM.Snapshot"] == ("checkpoints",)
    root = next(g for g in required_grants() if g.path == "/")
    assert root.used_for["Sys.Modify"] == ("network profiles",)


def test_handler_checks_apply_only_to_the_parameters_sent() -> None:
    net_only = [Use("PUT", "/nodes/{node}/qemu/{vmid}/config", "net", ("net0",))]
    needs = resolve(requirements(net_only))
    assert set(needs) == {("/vms/{vmid}", "VM.Config.Network"), ("/sdn/zones/{zone}/{bridge}", "SDN.Use")}
    cores = [Use("PUT", "/nodes/{node}/qemu/{vmid}/config", "cpu", ("cores",))]
    assert set(resolve(requirements(cores))) == {("/vms/{vmid}", "VM.Config.CPU")}


def _rules(check: object) -> dict[str, Rule]:
    return {"POST /x/{vmid}": Rule({"check": check})}


X = Use("POST", "/x/{vmid}", "f", ("newid",))


def _needs(check: object, use: Use = X) -> set[tuple[str, str]]:
    return set(resolve(requirements([use], _rules(check), handler_checks={})))


def test_and_takes_everything_or_takes_the_first_alternative() -> None:
    both = ["and", ["perm", "/vms/{vmid}", ["VM.Clone"]], ["perm", "/vms/{newid}", ["VM.Allocate"]]]
    assert _needs(both) == {("/vms/{vmid}", "VM.Clone"), ("/vms/{newid}", "VM.Allocate")}
    either = ["or", ["perm", "/", ["Sys.Audit"]], ["perm", "/nodes/{node}", ["Sys.Modify"]]]
    assert _needs(either) == {("/", "Sys.Audit")}
    assert _needs(["perm", "/vms/{vmid}", ["A", "B"]]) == {("/vms/{vmid}", "A"), ("/vms/{vmid}", "B")}
    assert _needs(["perm", "/vms/{vmid}", ["A", "B"], "any", 1]) == {("/vms/{vmid}", "A")}


def test_an_alternative_needing_an_unsent_parameter_does_not_count() -> None:
    pool_first = [
        "or",
        ["perm", "/pool/{pool}", ["VM.Allocate"], "require_param", "pool"],
        ["perm", "/vms", ["X"]],
    ]
    assert _needs(pool_first) == {("/vms", "X")}
    with_pool = Use("POST", "/x/{vmid}", "f", ("pool",))
    assert _needs(pool_first, with_pool) == {("/pool/{pool}", "VM.Allocate")}


def test_any_prefers_a_privilege_needed_anyway() -> None:
    uses = [Use("POST", "/a", "f"), Use("POST", "/b", "g")]
    rules = {
        "POST /a": Rule(
            {"check": ["perm", "/vms/{vmid}", ["VM.Snapshot", "VM.Snapshot.Rollback"], "any", 1]}
        ),
        "POST /b": Rule({"check": ["perm", "/vms/{vmid}", ["VM.Snapshot.Rollback"]]}),
    }
    assert set(resolve(requirements(uses, rules, handler_checks={}))) == {
        ("/vms/{vmid}", "VM.Snapshot.Rollback")
    }


def test_user_tests_and_access_checks() -> None:
    assert set(resolve(requirements([X], {X.key: Rule({"user": "all"})}, handler_checks={}))) == set()
    realm = ["userid-param", "Realm.AllocateUser"]
    assert _needs(realm) == {("/access/realm/{realm}", "Realm.AllocateUser")}
    assert _needs(["userid-group", ["User.Modify", "Sys.Audit"]]) == {("/access/groups", "User.Modify")}
    assert _needs(["perm-modify", "/vms/{vmid}"]) == {("/vms/{vmid}", "Permissions.Modify")}
    found = requirements([X], _rules(["perm-modify", "/vms/1"]), handler_checks={})
    assert [sorted(alt) for alt in found[0].alternatives] == [
        [("/vms/1", "Permissions.Modify")],
        [("/vms/1", "VM.Allocate")],
    ]


def test_root_only_and_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="root@pam only"):
        resolve(requirements([X], {X.key: Rule({})}, handler_checks={}))
    with pytest.raises(ValueError, match="root@pam only"):
        _needs(["userid-param", "self"])
    with pytest.raises(UnknownRule):
        _needs(["frobnicate", "/"])


def test_a_handler_check_is_added_to_the_schema_rule() -> None:
    extra = {("POST", "/x/{vmid}"): (HandlerCheck(("perm", "/storage/{storage}", ["S"]), "test", "newid"),)}
    found = requirements([X], _rules(["perm", "/vms/{vmid}", ["V"]]), handler_checks=extra)
    assert [r.source for r in found] == ["schema", "test"]
    assert set(resolve(found)) == {("/vms/{vmid}", "V"), ("/storage/{storage}", "S")}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/vms/{vmid}", ("/vms", True)),
        ("/vms/{newid}", ("/vms", True)),
        ("/storage/{storage}", ("/storage", True)),
        ("/nodes/{node}", ("/nodes", True)),
        ("/sdn/zones/{zone}/{bridge}", ("/sdn/zones", True)),
        ("/", ("/", False)),
        ("/access", ("/access", False)),
        ("/access/realm/pve", ("/access/realm/pve", False)),
    ],
)
def test_acl_path(template: str, expected: tuple[str, bool]) -> None:
    assert acl_path(template) == expected


def test_literal_and_propagated_needs_of_one_path_propagate() -> None:
    grants = by_acl_path({("/vms", "VM.Audit"): ("a",), ("/vms/{vmid}", "VM.Clone"): ("b",)})
    assert [(g.path, g.propagate, g.privileges) for g in grants] == [("/vms", True, ("VM.Audit", "VM.Clone"))]


# ---- the plan ----------------------------------------------------------------------------------


def test_the_plan_keeps_sys_modify_off_the_nodes() -> None:
    plan = access_plan()
    roles = {role.roleid: role.privileges for role in plan.roles}
    assert set(roles) == {"AutovibeHub", "AutovibeHub.Datacenter"}
    assert "Sys.Modify" not in roles["AutovibeHub"]
    assert roles["AutovibeHub.Datacenter"] == ("Sys.Audit", "Sys.Modify")
    assert [(a.path, a.roleid, a.propagate) for a in plan.acls] == [
        ("/vms", "AutovibeHub", True),
        ("/storage", "AutovibeHub", True),
        ("/nodes", "AutovibeHub", True),
        ("/sdn/zones", "AutovibeHub", True),
        ("/", "AutovibeHub.Datacenter", False),
    ]


def test_pveum_commands() -> None:
    commands = access_plan("Hub", "bot@pve", "ci").pveum_commands()
    assert commands[0].startswith(
        'pveum role add Hub --privs "Datastore.AllocateSpace,Datastore.Audit,SDN.Use,'
    )
    assert commands[1] == 'pveum role add Hub.Datacenter --privs "Sys.Audit,Sys.Modify"'
    assert commands[2].startswith("pveum user add bot@pve ")
    assert commands[3].startswith("pveum user token add bot@pve ci --privsep 1")
    assert "pveum acl modify /vms --users bot@pve --tokens 'bot@pve!ci' --roles Hub" in commands
    assert commands[-1] == (
        "pveum acl modify / --users bot@pve --tokens 'bot@pve!ci' --roles Hub.Datacenter --propagate 0"
    )


def test_what_apply_needs_from_the_admin() -> None:
    plan = access_plan()
    found = admin_requirements(plan)
    everything = {
        "/access": ["Sys.Modify"],
        "/access/groups": ["User.Modify"],
        "/access/realm/pve": ["Realm.AllocateUser"],
        **{acl.path: ["Permissions.Modify"] for acl in plan.acls},
    }
    assert unmet(found, everything) == []
    lacking = {**everything, "/access": [], "/": []}
    assert unmet(found, lacking) == [("/access", "Sys.Modify"), ("/", "Permissions.Modify")]
    # VM.Allocate would do for ACLs on one guest (/vms/100), not on /vms itself (check_perm_modify).
    assert unmet(found, {**everything, "/vms": ["VM.Allocate"]}) == [("/vms", "Permissions.Modify")]
