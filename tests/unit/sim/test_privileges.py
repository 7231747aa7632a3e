"""ACL evaluation and schema permission checks of the simulator (SEMANTICS.md §2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autovibe.sim.access import AccessState, AclEntry
from autovibe.sim.errors import SimApiError
from autovibe.sim.formats import PRIVILEGES as VALIDATOR_PRIVILEGES
from autovibe.sim.privileges import (
    PRIVILEGES,
    ROLES,
    capabilities,
    check_permissions,
    effective_privileges,
    normalize_path,
    permissions_map,
)
from autovibe.sim.registry import Identity
from autovibe.sim.schema import ApiSchema

ALICE = Identity("alice@pve")
ROOT = Identity("root@pam")
VMUSER = {"VM.Audit", "VM.Backup", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.PowerMgmt"}


@pytest.fixture(scope="module")
def schema() -> ApiSchema:
    return ApiSchema.load()


@pytest.fixture
def access() -> AccessState:
    state = AccessState.new(root_password="rootpw")
    state.add_user("alice@pve", "pw", roles=())
    state.add_user("bob@pve", "pw", roles=())
    return state


def perms(schema: ApiSchema, method: str, path: str):
    return schema.endpoint(method, path).permissions


def denied(access, identity, permissions, params) -> str:
    with pytest.raises(SimApiError) as info:
        check_permissions(access, identity, permissions, params)
    assert info.value.status == 403
    return info.value.message


# ---- roles -------------------------------------------------------------------------------------


def test_privilege_names_are_pve8s_and_match_the_validator():
    assert len(PRIVILEGES) == 42
    assert PRIVILEGES == VALIDATOR_PRIVILEGES
    assert ROLES["Administrator"] == PRIVILEGES
    assert all(privs <= PRIVILEGES for privs in ROLES.values())


def test_builtin_roles_have_pve8_privilege_sets():
    assert ROLES["PVEVMUser"] == VMUSER
    audits = {"VM.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit", "Pool.Audit", "Mapping.Audit"}
    assert ROLES["PVEAuditor"] == audits
    assert ROLES["PVETemplateUser"] == {"VM.Clone", "VM.Audit"}
    assert ROLES["PVEDatastoreUser"] == {"Datastore.AllocateSpace", "Datastore.Audit"}
    assert ROLES["NoAccess"] == frozenset()
    # PVEAdmin: "most tasks" but no system settings, realms, permissions or mapping changes.
    for priv in ("Permissions.Modify", "Sys.Modify", "Sys.PowerMgmt", "Realm.Allocate", "Mapping.Modify"):
        assert priv not in ROLES["PVEAdmin"]
    assert {"VM.Allocate", "Datastore.Allocate", "User.Modify", "Sys.Console"} <= ROLES["PVEAdmin"]
    assert set(ROLES) == {
        "Administrator", "NoAccess", "PVEAdmin", "PVEAuditor", "PVEVMAdmin", "PVEVMUser",
        "PVEDatastoreAdmin", "PVEDatastoreUser", "PVEPoolAdmin", "PVEPoolUser", "PVESysAdmin",
        "PVEUserAdmin", "PVETemplateUser", "PVESDNUser", "PVESDNAdmin", "PVEMappingUser", "PVEMappingAdmin",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("/", "/"), ("vms/100", "/vms/100"), ("//vms//100/", "/vms/100"), ("", None), ("/vms/1 0", None)],
)
def test_normalize_path(raw, normal):
    assert normalize_path(raw) == normal


# ---- ACL inheritance ---------------------------------------------------------------------------


def test_roles_on_root_propagate_down_the_tree(access):
    access.set_acl("/", "alice@pve", "PVEAuditor")
    privs = effective_privileges(access, ALICE, "/vms/100")
    assert set(privs) == ROLES["PVEAuditor"]
    assert all(privs.values())


def test_most_specific_level_overrides_the_levels_above(access):
    access.set_acl("/", "alice@pve", "PVEAdmin")
    access.set_acl("/vms/100", "alice@pve", "PVEAuditor")
    assert set(effective_privileges(access, ALICE, "/vms/100")) == ROLES["PVEAuditor"]
    assert set(effective_privileges(access, ALICE, "/vms/101")) == ROLES["PVEAdmin"]


def test_non_propagating_entry_counts_only_on_its_own_path(access):
    access.set_acl("/", "alice@pve", "PVEAuditor")
    access.set_acl("/vms", "alice@pve", "PVEVMAdmin", propagate=False)
    on_vms = effective_privileges(access, ALICE, "/vms")
    assert set(on_vms) == ROLES["PVEVMAdmin"]
    assert not any(on_vms.values())  # the propagate flag is reported as 0
    # Below /vms the non-propagating entry does not apply, so "/" is the nearest level.
    assert set(effective_privileges(access, ALICE, "/vms/100")) == ROLES["PVEAuditor"]


def test_no_access_beats_other_roles_on_the_same_level(access):
    access.set_acl("/", "alice@pve", "Administrator")
    access.set_acl("/vms/100", "alice@pve", "NoAccess")
    access.set_acl("/vms/100", "alice@pve", "PVEVMUser")
    assert effective_privileges(access, ALICE, "/vms/100") == {}


def test_root_has_everything_without_any_acl(access):
    assert set(effective_privileges(access, ROOT, "/vms/12345")) == PRIVILEGES


def test_pool_acl_reaches_members_without_propagating(access):
    pools = {"dev": {"vms": [100]}}
    access.set_acl("/pool/dev", "alice@pve", "PVEVMUser")
    on_member = effective_privileges(access, ALICE, "/vms/100", pools=pools)
    assert set(on_member) == VMUSER
    assert not any(on_member.values())
    assert effective_privileges(access, ALICE, "/vms/101", pools=pools) == {}
    access.set_acl("/vms/100", "alice@pve", "NoAccess")
    assert effective_privileges(access, ALICE, "/vms/100", pools=pools) == {}


# ---- tokens ------------------------------------------------------------------------------------


def test_privsep_token_gets_the_intersection_with_its_user(access):
    access.set_acl("/", "alice@pve", "PVEAdmin")
    access.add_token("alice@pve", "ci", "s", privsep=True)
    access.set_acl("/vms/100", "alice@pve!ci", "PVEVMUser")
    token = Identity("alice@pve", "ci")
    assert set(effective_privileges(access, token, "/vms/100")) == VMUSER
    assert effective_privileges(access, token, "/vms/101") == {}


def test_privsep_token_cannot_exceed_its_user(access):
    access.set_acl("/", "alice@pve", "PVEAuditor")
    access.add_token("alice@pve", "ci", "s", privsep=True)
    access.set_acl("/", "alice@pve!ci", "Administrator", propagate=False)
    privs = effective_privileges(access, Identity("alice@pve", "ci"), "/")
    assert set(privs) == ROLES["PVEAuditor"]
    assert not any(privs.values())  # propagates only when both sides do


def test_new_privsep_token_has_nothing_and_plain_token_has_its_users_rights(access):
    access.set_acl("/", "alice@pve", "PVEAdmin")
    access.add_token("alice@pve", "sep", "s", privsep=True)
    access.add_token("alice@pve", "full", "s", privsep=False)
    assert effective_privileges(access, Identity("alice@pve", "sep"), "/vms/100") == {}
    assert set(effective_privileges(access, Identity("alice@pve", "full"), "/vms/100")) == ROLES["PVEAdmin"]
    assert effective_privileges(access, Identity("alice@pve", "missing"), "/") == {}


def test_root_privsep_token_has_only_its_own_acls(access):
    access.add_token("root@pam", "sep", "s", privsep=True)
    access.add_token("root@pam", "full", "s")
    access.set_acl("/vms/100", "root@pam!sep", "PVEVMUser")
    assert set(effective_privileges(access, Identity("root@pam", "sep"), "/vms/100")) == VMUSER
    assert effective_privileges(access, Identity("root@pam", "sep"), "/") == {}
    assert set(effective_privileges(access, Identity("root@pam", "full"), "/")) == PRIVILEGES


_BASE = AccessState.new(root_password="x")
_BASE.add_user("carol@pve", None, roles=())
_BASE.add_token("carol@pve", "tk", "s", privsep=True)
_ACL_PATHS = st.sampled_from(["/", "/vms", "/vms/100", "/storage", "/storage/local"])
_ACLS = st.lists(
    st.builds(
        AclEntry,
        _ACL_PATHS,
        st.sampled_from(["carol@pve", "carol@pve!tk"]),
        st.sampled_from(sorted(ROLES)),
        st.booleans(),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(acls=_ACLS, path=_ACL_PATHS)
def test_privsep_token_never_exceeds_its_user(acls, path):
    state = AccessState(users=_BASE.users, acls=acls, signing_key=_BASE.signing_key)
    user = effective_privileges(state, Identity("carol@pve"), path)
    token = effective_privileges(state, Identity("carol@pve", "tk"), path)
    assert set(token) <= set(user)
    assert all(user[priv] for priv, prop in token.items() if prop)


# ---- schema permission checks ------------------------------------------------------------------


def test_clone_needs_clone_on_source_and_allocate_on_target(access, schema):
    clone = perms(schema, "POST", "/nodes/{node}/qemu/{vmid}/clone")
    params = {"node": "pve1", "vmid": 9000, "newid": 101}
    access.set_acl("/vms/9000", "alice@pve", "PVETemplateUser")
    assert denied(access, ALICE, clone, params) == "Permission check failed"  # the "or" failed
    access.set_acl("/vms/101", "alice@pve", "PVEVMAdmin")
    check_permissions(access, ALICE, clone, params)
    assert (
        denied(access, ALICE, clone, {**params, "vmid": 9001})
        == "Permission check failed (/vms/9001, VM.Clone)"
    )


def test_clone_pool_alternative_counts_only_when_pool_is_given(access, schema):
    clone = perms(schema, "POST", "/nodes/{node}/qemu/{vmid}/clone")
    params = {"node": "pve1", "vmid": 9000, "newid": 101}
    access.set_acl("/vms/9000", "alice@pve", "PVETemplateUser")
    # VM.Allocate on every pool: "/pool/-" (the path without a pool) would pass, if it were checked.
    access.set_acl("/pool", "alice@pve", "PVEVMAdmin")
    check_permissions(access, ALICE, clone, {**params, "pool": "dev"})
    assert denied(access, ALICE, clone, params) == "Permission check failed"
    access.set_acl("/pool/prod", "alice@pve", "NoAccess")
    assert denied(access, ALICE, clone, {**params, "pool": "prod"}) == "Permission check failed"


def test_user_all_and_world(access, schema):
    nodes = perms(schema, "GET", "/nodes")
    check_permissions(access, ALICE, nodes, {})  # no ACL at all, still allowed
    assert denied(access, None, nodes, {}) == "Permission check failed (user != null)"
    check_permissions(access, None, perms(schema, "POST", "/access/ticket"), {})


def test_missing_or_unknown_permissions_are_for_root_only(access):
    check_permissions(access, ROOT, None, {})
    check_permissions(access, ROOT, {"check": ["frobnicate"]}, {})
    assert denied(access, ALICE, None, {}) == "Permission check failed (user != root@pam)"
    access.set_acl("/", "alice@pve", "Administrator")
    assert denied(access, ALICE, {"check": ["frobnicate"]}, {}) == "Permission check failed"
    assert denied(access, Identity("root@pam", "sep"), None, {}).endswith("(user != root@pam)")


def test_any_joins_privileges_and_all_names_the_first_missing(access, schema):
    rollback = perms(schema, "POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback")
    params = {"node": "pve1", "vmid": 100, "snapname": "s1"}
    message = denied(access, ALICE, rollback, params)
    assert message == "Permission check failed (/vms/100, VM.Snapshot|VM.Snapshot.Rollback)"
    access.set_acl("/vms/100", "alice@pve", "PVEVMAdmin")
    check_permissions(access, ALICE, rollback, params)
    both = {"check": ["perm", "/vms/{vmid}", ["VM.Audit", "Sys.Modify", "Sys.PowerMgmt"]]}
    assert denied(access, ALICE, both, params) == "Permission check failed (/vms/100, Sys.Modify)"


def test_missing_placeholder_becomes_a_dash(access):
    check = {"check": ["perm", "/vms/{vmid}", ["VM.Audit"]]}
    assert denied(access, ALICE, check, {}) == "Permission check failed (/vms/-, VM.Audit)"


def test_userid_self_or_user_modify_for_token_endpoints(access, schema):
    tokens = perms(schema, "GET", "/access/users/{userid}/token")
    check_permissions(access, ALICE, tokens, {"userid": "alice@pve"})
    assert denied(access, ALICE, tokens, {"userid": "bob@pve"}) == "Permission check failed"
    assert denied(access, ALICE, tokens, {"userid": "ghost@pve"}) == "Permission check failed"
    # A token is not its user for "self" (PVE compares the full auth id).
    access.add_token("alice@pve", "full", "s")
    assert denied(access, Identity("alice@pve", "full"), tokens, {"userid": "alice@pve"})
    access.set_acl("/access/groups", "alice@pve", "PVEUserAdmin")
    check_permissions(access, ALICE, tokens, {"userid": "bob@pve"})


def test_and_inside_or_raises_its_own_message_like_pve(access, schema):
    password = perms(schema, "PUT", "/access/password")
    check_permissions(access, ALICE, password, {"userid": "alice@pve", "password": "x"})
    message = denied(access, ALICE, password, {"userid": "bob@pve", "password": "x"})
    assert message == "Permission check failed (/access/realm/pve, Realm.AllocateUser)"


def test_perm_modify_accepts_the_objects_allocate_privilege(access, schema):
    acl = perms(schema, "PUT", "/access/acl")
    access.set_acl("/vms/100", "alice@pve", "PVEVMAdmin")
    check_permissions(access, ALICE, acl, {"path": "/vms/100", "roles": "PVEVMUser"})
    assert denied(access, ALICE, acl, {"path": "/", "roles": "PVEVMUser"}) == (
        "Permission check failed (/, Permissions.Modify)"
    )
    assert denied(access, ALICE, acl, {"path": "/vms/101", "roles": "PVEVMUser"}) == (
        "Permission check failed (/vms/101, Permissions.Modify|VM.Allocate)"
    )


# ---- permissions map and cap -------------------------------------------------------------------


def test_permissions_map_lists_paths_with_privileges_and_their_propagate_flag(access):
    access.set_acl("/", "alice@pve", "PVEAuditor")
    access.set_acl("/vms/100", "alice@pve", "PVEVMUser", propagate=False)
    access.set_acl("/storage/local", "bob@pve", "PVEDatastoreUser")
    result = permissions_map(access, ALICE, None)
    assert result["/"]["VM.Audit"] == 1
    assert result["/vms/100"] == {priv: 0 for priv in sorted(VMUSER)}
    assert set(result["/storage/local"]) == ROLES["PVEAuditor"]  # bob's ACL path, alice's rights
    assert all(isinstance(v, int) for privs in result.values() for v in privs.values())
    assert permissions_map(access, Identity("bob@pve"), None) == {
        "/storage/local": {"Datastore.AllocateSpace": 1, "Datastore.Audit": 1}
    }


def test_permissions_map_with_a_path_answers_that_path_even_when_empty(access):
    access.set_acl("/vms/100", "alice@pve", "PVEVMUser")
    assert permissions_map(access, ALICE, "/vms/100") == {"/vms/100": dict.fromkeys(sorted(VMUSER), 1)}
    assert permissions_map(access, ALICE, "/vms/101") == {"/vms/101": {}}


def test_capabilities_group_privileges_by_gui_section(access):
    access.set_acl("/", "alice@pve", "PVEAuditor")
    cap = capabilities(access, ALICE)
    assert set(cap) == {"vms", "access", "storage", "nodes", "sdn", "dc", "mapping"}
    assert cap["vms"] == {"VM.Audit": 1}
    assert cap["dc"] == {"Sys.Audit": 1, "SDN.Audit": 1}
    assert cap["access"] == {}
    root = capabilities(access, ROOT)
    assert all(root[section]["Permissions.Modify"] == 1 for section in ("vms", "access", "storage"))
