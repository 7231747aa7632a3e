"""Users, tokens, tickets, authentication and the /access handlers of the simulator (SEMANTICS.md §2)."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote

import pytest

from autovibe.sim.access import AccessState, authenticate, verify_secret
from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import SimApiError, SimAuthError
from autovibe.sim.privileges import ROLES, effective_privileges
from autovibe.sim.registry import ROUTES, Call, Identity
from autovibe.sim.routes import access as access_routes  # noqa: F401 - registers the handlers

T0 = 1_700_000_000  # an issue time; tickets carry whole seconds
TICKET_RE = re.compile(r"^PVE:(?P<user>[^:]+):(?P<hex>[0-9A-F]{8})::[A-Za-z0-9+/]+={0,2}$")
CSRF_RE = re.compile(r"^[0-9A-F]{8}:[A-Za-z0-9+/]{43}$")  # Digest::SHA base64: no padding


@pytest.fixture
def access() -> AccessState:
    state = AccessState.new(root_password="rootpw")
    state.apply_config(
        {
            "users": [{"userid": "alice@pve", "password": "alicepw", "roles": [["/vms/100", "PVEVMUser"]]}],
            "tokens": [{"id": "root@pam!ci", "secret": "root-secret"}],
        }
    )
    return state


def auth(access, *, method="GET", headers=None, cookies=None, now=T0) -> Identity:
    return authenticate(access, method=method, headers=headers or {}, cookies=cookies or {}, now=now)


def auth_error(access, **kwargs) -> str:
    with pytest.raises(SimAuthError) as info:
        auth(access, **kwargs)
    assert info.value.status == 401
    return info.value.message


def login_fails(access, *args, **kwargs) -> None:
    with pytest.raises(SimApiError) as info:
        access.login(*args, **kwargs)
    assert type(info.value) is SimApiError  # a JSON-bodied 401, not the empty-bodied auth error
    assert (info.value.status, info.value.message) == (401, "authentication failure")


# ---- login and tickets -------------------------------------------------------------------------


def test_login_answers_pve_shaped_ticket_csrf_token_and_cap(access):
    result = access.login("alice@pve", "alicepw", T0 + 0.7)
    assert result["username"] == "alice@pve"
    match = TICKET_RE.match(result["ticket"])
    assert match and match["user"] == "alice@pve" and int(match["hex"], 16) == T0
    assert CSRF_RE.match(result["CSRFPreventionToken"])
    assert result["CSRFPreventionToken"].startswith(f"{T0:08X}:")
    assert result["cap"]["vms"] == dict.fromkeys(ROLES["PVEVMUser"], 1)


def test_login_with_realm_parameter(access):
    assert access.login("alice", "alicepw", T0, realm="pve")["username"] == "alice@pve"
    login_fails(access, "alice", "alicepw", T0, realm="pam")


def test_login_failures_all_look_the_same(access):
    login_fails(access, "alice@pve", "wrong", T0)
    login_fails(access, "ghost@pve", "alicepw", T0)
    login_fails(access, "alice@pve", "", T0)
    access.users["alice@pve"].expire = T0 - 1
    login_fails(access, "alice@pve", "alicepw", T0)
    access.users["alice@pve"].expire = 0
    access.users["alice@pve"].enable = False
    login_fails(access, "alice@pve", "alicepw", T0)


def test_root_password_is_random_unless_given():
    first, second = AccessState.new(), AccessState.new()
    assert first.users["root@pam"].password_hash != second.users["root@pam"].password_hash
    login_fails(first, "root@pam", "", T0)
    chosen = AccessState.new(root_password="chosen")
    assert chosen.login("root@pam", "chosen", T0)["username"] == "root@pam"
    assert verify_secret("chosen", chosen.users["root@pam"].password_hash or "")


def test_ticket_is_valid_for_two_hours_plus_grace(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    cookies = {"PVEAuthCookie": ticket}
    assert auth(access, cookies=cookies, now=T0 + 7499) == Identity("alice@pve")
    assert auth_error(access, cookies=cookies, now=T0 + 7500) == "Authentication failed!"
    # Issued in the future: tolerated within the 5-minute grace for clock skew only.
    assert auth(access, cookies=cookies, now=T0 - 299) == Identity("alice@pve")
    assert auth_error(access, cookies=cookies, now=T0 - 300) == "Authentication failed!"


def test_ticket_renewal_with_the_ticket_as_password(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    renewed = access.login("alice@pve", ticket, T0 + 3600)["ticket"]
    assert TICKET_RE.match(renewed)["hex"] == f"{T0 + 3600:08X}"
    login_fails(access, "alice@pve", ticket, T0 + 7500)  # expired tickets renew nothing
    login_fails(access, "root@pam", ticket, T0)  # alice's ticket is not root's
    root_ticket = access.login("root@pam", "rootpw", T0)["ticket"]
    assert access.login("alice@pve", root_ticket, T0)["username"] == "alice@pve"  # root may mint


def test_forged_or_foreign_tickets_are_rejected(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    forged = ticket.replace("alice@pve", "root@pam")
    assert auth_error(access, cookies={"PVEAuthCookie": forged}) == "Authentication failed!"
    other = AccessState.new(root_password="rootpw")
    foreign = other.login("root@pam", "rootpw", T0)["ticket"]
    assert auth_error(access, cookies={"PVEAuthCookie": foreign}) == "Authentication failed!"
    assert auth_error(access, cookies={"PVEAuthCookie": "PVE:root@pam:zz::x"}) == "Authentication failed!"


def test_login_with_path_and_privs_only_verifies(access):
    assert access.login("alice@pve", "alicepw", T0, path="/vms/100", privs="VM.Console") == {
        "username": "alice@pve"
    }
    login_fails(access, "alice@pve", "alicepw", T0, path="/vms/101", privs="VM.Console")


# ---- authenticate ------------------------------------------------------------------------------


def test_no_credentials_is_no_ticket(access):
    assert auth_error(access) == "No ticket"
    assert (
        auth_error(access, cookies={"PVEAuthCookie": ""}, headers={"authorization": "Basic x"}) == "No ticket"
    )


def test_csrf_token_required_for_writes_with_a_ticket(access):
    login = access.login("alice@pve", "alicepw", T0)
    cookies = {"PVEAuthCookie": login["ticket"]}
    assert auth(access, method="GET", cookies=cookies) == Identity("alice@pve")
    assert auth_error(access, method="POST", cookies=cookies) == "Permission denied - invalid csrf token"
    good = {"csrfpreventiontoken": login["CSRFPreventionToken"]}
    assert auth(access, method="POST", cookies=cookies, headers=good) == Identity("alice@pve")
    roots = {"csrfpreventiontoken": access.login("root@pam", "rootpw", T0)["CSRFPreventionToken"]}
    message = auth_error(access, method="DELETE", cookies=cookies, headers=roots)
    assert message == "Permission denied - invalid csrf token"


def test_csrf_token_not_needed_with_an_api_token(access):
    headers = {"authorization": "PVEAPIToken=root@pam!ci=root-secret"}
    assert auth(access, method="POST", headers=headers) == Identity("root@pam", "ci")


def test_ticket_in_the_authorization_header_url_encoded(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    headers = {"authorization": f"PVEAuthCookie={quote(ticket, safe='')}"}
    assert auth(access, headers=headers) == Identity("alice@pve")


def test_ticket_wins_over_token(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    headers = {"authorization": "PVEAPIToken=root@pam!ci=root-secret"}
    assert auth(access, headers=headers, cookies={"PVEAuthCookie": ticket}) == Identity("alice@pve")


@pytest.mark.parametrize("prefix", ["PVEAPIToken=", "PVEAPIToken "])
def test_token_header_forms(access, prefix):
    assert auth(access, headers={"authorization": f"{prefix}root@pam!ci=root-secret"}) == Identity(
        "root@pam", "ci"
    )


def test_token_value_splits_at_the_last_equals_sign(access):
    access.add_user("we=ird@pve", "pw", roles=())
    secret = access.add_token("we=ird@pve", "ci")
    headers = {"authorization": f"PVEAPIToken=we=ird@pve!ci={secret}"}
    assert auth(access, headers=headers) == Identity("we=ird@pve", "ci")
    bad = {"authorization": "PVEAPIToken=root@pam!ci=root-secret=x"}
    assert auth_error(access, headers=bad) == "Authentication failed!"


def test_bad_expired_or_disabled_tokens_fail(access):
    def token_error(value: str, now: float = T0) -> str:
        return auth_error(access, headers={"authorization": f"PVEAPIToken={value}"}, now=now)

    assert token_error("root@pam!ci=wrong") == "Authentication failed!"
    assert token_error("root@pam!nope=root-secret") == "Authentication failed!"
    assert token_error("root@pam!ci") == "Authentication failed!"
    access.add_token("alice@pve", "short", "s3", expire=T0 + 10)
    assert auth(access, headers={"authorization": "PVEAPIToken=alice@pve!short=s3"}, now=T0 + 10)
    assert token_error("alice@pve!short=s3", now=T0 + 11) == "Authentication failed!"
    access.users["alice@pve"].enable = False
    access.add_token("alice@pve", "other", "s4")
    assert token_error("alice@pve!other=s4") == "Authentication failed!"


def test_disabled_user_loses_its_tickets(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    access.users["alice@pve"].enable = False
    assert auth_error(access, cookies={"PVEAuthCookie": ticket}) == "Authentication failed!"


# ---- state -------------------------------------------------------------------------------------


def test_add_token_defaults_to_a_uuid4_secret_without_privsep(access):
    secret = access.add_token("alice@pve", "cli")
    assert uuid.UUID(secret).version == 4
    assert access.users["alice@pve"].tokens["cli"].privsep is False


def test_remove_path_drops_only_that_paths_entries(access):
    access.set_acl("/vms/101", "alice@pve", "PVEAuditor")
    access.remove_path("/vms/100")
    assert [(e.path, e.roleid) for e in access.acls] == [("/vms/101", "PVEAuditor")]


def test_persisted_state_keeps_hashes_only_and_round_trips(access):
    ticket = access.login("alice@pve", "alicepw", T0)["ticket"]
    dumped = json.dumps(access.to_dict())
    for plain in ("rootpw", "alicepw", "root-secret"):
        assert plain not in dumped
    restored = AccessState.from_dict(json.loads(dumped))
    assert restored.to_dict() == access.to_dict()
    assert auth(restored, cookies={"PVEAuthCookie": ticket}) == Identity("alice@pve")  # same key
    assert auth(restored, headers={"authorization": "PVEAPIToken=root@pam!ci=root-secret"})
    assert restored.login("alice@pve", "alicepw", T0)["username"] == "alice@pve"


def test_apply_config_creates_least_privileged_users_tokens_and_acls(access):
    access.apply_config(
        {
            "users": [{"userid": "bob@pve", "password": "bobpw"}],
            "tokens": [{"id": "bob@pve!ro", "secret": "bob-secret", "privsep": True}],
            "acl": [{"path": "/vms", "ugid": "bob@pve", "role": "PVEAuditor", "propagate": False}],
        }
    )
    bob = Identity("bob@pve")
    assert set(effective_privileges(access, bob, "/vms")) == ROLES["PVEAuditor"]
    assert effective_privileges(access, bob, "/vms/100") == {}
    assert effective_privileges(access, Identity("bob@pve", "ro"), "/vms") == {}
    assert auth(access, headers={"authorization": "PVEAPIToken=bob@pve!ro=bob-secret"}) == Identity(
        "bob@pve", "ro"
    )


@pytest.mark.parametrize(
    "config",
    [
        {"users": [{"userid": "nobody", "password": "x"}]},
        {"users": [{"userid": "dan@pve", "roles": [["/", "Superuser"]]}]},
        {"tokens": [{"id": "ghost@pve!ci"}]},
        {"acl": [{"path": "/", "ugid": "ghost@pve", "role": "PVEAuditor"}]},
        {"acl": [{"path": "/", "role": "PVEAuditor"}]},
        {"users": [{"userid": "ok@pve"}, {"password": "x"}]},
    ],
)
def test_apply_config_rejects_bad_entries_naming_them(access, config):
    section = next(iter(config))
    with pytest.raises(ValueError, match=rf"^access config {section}\[{len(config[section]) - 1}\]: "):
        access.apply_config(config)


# ---- /access handlers --------------------------------------------------------------------------


@pytest.fixture
def cluster(access) -> Cluster:
    cluster = Cluster.default(now=T0)
    cluster.access = access
    return cluster


def call(cluster, method, template, identity, /, **params):
    """Run the registered handler the way the app does after validation and the permission check."""
    handler = ROUTES[(method, template)].handler
    return handler(Call(cluster, identity, params, T0, method, template))


def api_error(cluster, method, template, identity, /, **params) -> SimApiError:
    with pytest.raises(SimApiError) as info:
        call(cluster, method, template, identity, **params)
    return info.value


ALICE, ROOT = Identity("alice@pve"), Identity("root@pam")


def test_ticket_handler_adds_clustername_for_auditors(cluster):
    root = call(cluster, "POST", "/access/ticket", None, username="root@pam", password="rootpw")
    assert root["clustername"]
    alice = call(cluster, "POST", "/access/ticket", None, username="alice", realm="pve", password="alicepw")
    assert "clustername" not in alice and alice["username"] == "alice@pve"


def test_permissions_handler_for_self_owned_token_and_others(cluster):
    assert call(cluster, "GET", "/access/permissions", ALICE)["/vms/100"]["VM.Console"] == 1
    cluster.access.add_token("alice@pve", "ci", "s", privsep=True)
    assert call(cluster, "GET", "/access/permissions", ALICE, userid="alice@pve!ci") == {}
    error = api_error(cluster, "GET", "/access/permissions", ALICE, userid="root@pam")
    assert (error.status, error.message) == (403, "Permission check failed (/access, Sys.Audit)")
    assert call(cluster, "GET", "/access/permissions", ROOT, userid="alice@pve", path="/vms/101") == {
        "/vms/101": {}
    }


def test_users_list_is_filtered_and_secret_free(cluster):
    assert [u["userid"] for u in call(cluster, "GET", "/access/users", ALICE)] == ["alice@pve"]
    rows = call(cluster, "GET", "/access/users", ROOT, full=True)
    root = next(r for r in rows if r["userid"] == "root@pam")
    assert root["tokens"] == [{"tokenid": "ci", "privsep": 0, "expire": 0}]
    assert root["enable"] == 1 and root["realm-type"] == "pam"
    cluster.access.users["alice@pve"].enable = False
    assert [u["userid"] for u in call(cluster, "GET", "/access/users", ROOT, enabled=False)] == ["alice@pve"]
    assert "hash" not in json.dumps(rows)


def test_token_lifecycle_through_the_handlers(cluster):
    path = "/access/users/{userid}/token/{tokenid}"
    created = call(cluster, "POST", path, ALICE, userid="alice@pve", tokenid="auto", comment="ci")
    assert created["full-tokenid"] == "alice@pve!auto"
    assert created["info"] == {"privsep": 1, "expire": 0, "comment": "ci"}
    assert uuid.UUID(created["value"]).version == 4
    header = {"authorization": f"PVEAPIToken=alice@pve!auto={created['value']}"}
    assert auth(cluster.access, headers=header) == Identity("alice@pve", "auto")
    duplicate = api_error(cluster, "POST", path, ALICE, userid="alice@pve", tokenid="auto")
    assert (duplicate.status, duplicate.errors) == (400, {"tokenid": "Token already exists."})
    updated = call(cluster, "PUT", path, ALICE, userid="alice@pve", tokenid="auto", privsep=False, comment="")
    assert updated == {"privsep": 0, "expire": 0}
    listed = call(cluster, "GET", "/access/users/{userid}/token", ALICE, userid="alice@pve")
    assert listed == [{"tokenid": "auto", "privsep": 0, "expire": 0}]
    call(cluster, "PUT", "/access/acl", ROOT, path="/vms/100", roles="PVEAuditor", tokens="alice@pve!auto")
    assert call(cluster, "DELETE", path, ALICE, userid="alice@pve", tokenid="auto") is None
    assert all(e.ugid != "alice@pve!auto" for e in cluster.access.acls)
    missing = api_error(cluster, "GET", path, ALICE, userid="alice@pve", tokenid="auto")
    assert (missing.status, missing.message) == (500, "no such token 'auto' for user 'alice@pve'")


def test_acl_update_grants_and_revokes(cluster):
    cluster.access.add_token("alice@pve", "ci", "s", privsep=True)
    call(
        cluster,
        "PUT",
        "/access/acl",
        ROOT,
        path="/vms/100",
        roles="PVEVMUser",
        tokens="alice@pve!ci",
        propagate=False,
    )
    rows = call(cluster, "GET", "/access/acl", ROOT)
    assert {
        "path": "/vms/100",
        "type": "token",
        "ugid": "alice@pve!ci",
        "roleid": "PVEVMUser",
        "propagate": 0,
    } in rows
    token = Identity("alice@pve", "ci")
    assert set(effective_privileges(cluster.access, token, "/vms/100")) == ROLES["PVEVMUser"]
    call(
        cluster,
        "PUT",
        "/access/acl",
        ROOT,
        path="/vms/100",
        roles="PVEVMUser",
        tokens="alice@pve!ci",
        delete=True,
    )
    assert effective_privileges(cluster.access, token, "/vms/100") == {}


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        (
            {"path": "/vms/100", "roles": "PVEVMUser"},
            400,
            "either 'users', 'groups' or 'tokens' is required.",
        ),
        (
            {"path": "/nonsense", "roles": "PVEVMUser", "users": "alice@pve"},
            400,
            "invalid ACL path '/nonsense'",
        ),
        ({"path": "/", "roles": "Superuser", "users": "alice@pve"}, 500, "role 'Superuser' does not exist"),
        ({"path": "/", "roles": "PVEAuditor", "users": "ghost@pve"}, 500, "user 'ghost@pve' does not exist"),
        ({"path": "/", "roles": "PVEAuditor", "groups": "admins"}, 500, "group 'admins' does not exist"),
    ],
)
def test_acl_update_refuses_bad_requests(cluster, params, status, text):
    error = api_error(cluster, "PUT", "/access/acl", ROOT, **params)
    assert error.status == status
    assert text in (json.dumps(error.errors) if error.errors else error.message)
    assert len(cluster.access.acls) == 1  # nothing changed: only alice's seed entry


def test_acl_delegation_is_limited_to_privileges_held(cluster):
    cluster.access.add_user("bob@pve", "pw", roles=())
    cluster.access.set_acl("/vms/100", "alice@pve", "PVEVMAdmin")
    call(cluster, "PUT", "/access/acl", ALICE, path="/vms/100", roles="PVEVMUser", users="bob@pve")
    error = api_error(
        cluster, "PUT", "/access/acl", ALICE, path="/vms/100", roles="PVEAdmin", users="bob@pve"
    )
    assert (error.status, error.message) == (403, "Permission check failed (/vms/100, Datastore.Allocate)")
    # GET /access/acl shows alice only the entries on paths she may modify.
    assert {row["path"] for row in call(cluster, "GET", "/access/acl", ALICE)} == {"/vms/100"}


def test_roles_list(cluster):
    roles = {row["roleid"]: row for row in call(cluster, "GET", "/access/roles", ALICE)}
    assert set(roles) == set(ROLES)
    assert roles["PVETemplateUser"] == {
        "roleid": "PVETemplateUser",
        "privs": "VM.Audit,VM.Clone",
        "special": 1,
    }


# ---- custom roles and users --------------------------------------------------------------------


def test_custom_role_lifecycle_through_the_handlers(cluster):
    call(cluster, "POST", "/access/roles", ROOT, roleid="Hub", privs="VM.Audit,VM.Snapshot")
    roles = {row["roleid"]: row for row in call(cluster, "GET", "/access/roles", ALICE)}
    assert roles["Hub"] == {"roleid": "Hub", "privs": "VM.Audit,VM.Snapshot"}  # no "special"
    assert call(cluster, "GET", "/access/roles/{roleid}", ALICE, roleid="Hub") == {
        "VM.Audit": 1,
        "VM.Snapshot": 1,
    }
    call(cluster, "PUT", "/access/roles/{roleid}", ROOT, roleid="Hub", privs="VM.Console", append=1)
    assert cluster.access.roles["Hub"] == {"VM.Audit", "VM.Snapshot", "VM.Console"}
    call(cluster, "PUT", "/access/roles/{roleid}", ROOT, roleid="Hub", privs="VM.Audit")
    assert cluster.access.roles["Hub"] == {"VM.Audit"}
    call(cluster, "DELETE", "/access/roles/{roleid}", ROOT, roleid="Hub")
    assert "Hub" not in cluster.access.roles


ROLE = "/access/roles/{roleid}"
AUDIT = "Sys.Audit"


@pytest.mark.parametrize(
    ("method", "template", "params", "status", "text"),
    [
        ("POST", "/access/roles", {"roleid": "PVEMine"}, 400, "'PVE' namespace"),
        ("POST", "/access/roles", {"roleid": "PVEAdmin"}, 400, "'PVE' namespace"),
        ("POST", "/access/roles", {"roleid": "Administrator"}, 500, "role 'Administrator' already exists"),
        ("PUT", ROLE, {"roleid": "PVEAuditor", "privs": AUDIT}, 500, "role 'PVEAuditor' cannot be modified"),
        ("PUT", ROLE, {"roleid": "Ghost", "privs": AUDIT}, 500, "update role failed: role 'Ghost' does not"),
        ("DELETE", ROLE, {"roleid": "NoAccess"}, 500, "cannot be deleted"),
        ("GET", ROLE, {"roleid": "Ghost"}, 500, "role 'Ghost' does not exist"),
    ],
)  # fmt: skip
def test_role_handlers_refuse_like_pve(cluster, method, template, params, status, text):
    error = api_error(cluster, method, template, ROOT, **params)
    assert error.status == status
    assert text in (json.dumps(error.errors) if error.errors else error.message)


def test_a_custom_role_grants_through_acls_and_survives_a_save(cluster):
    cluster.access.add_role("Snapper", ["VM.Snapshot", "VM.Audit"])
    cluster.access.add_token("alice@pve", "ci", "s", privsep=True)
    call(
        cluster,
        "PUT",
        "/access/acl",
        ROOT,
        path="/vms",
        roles="Snapper",
        users="alice@pve",
        tokens="alice@pve!ci",
    )
    token = Identity("alice@pve", "ci")
    assert set(effective_privileges(cluster.access, token, "/vms/101")) == {"VM.Snapshot", "VM.Audit"}
    reloaded = AccessState.from_dict(json.loads(json.dumps(cluster.access.to_dict())))
    assert reloaded.roles == {"Snapper": frozenset({"VM.Snapshot", "VM.Audit"})}
    assert set(effective_privileges(reloaded, token, "/vms/101")) == {"VM.Snapshot", "VM.Audit"}
    # Like PVE, deleting the role leaves the ACL entries, which then grant nothing.
    cluster.access.remove_role("Snapper")
    assert effective_privileges(cluster.access, token, "/vms/101") == {}
    with pytest.raises(ValueError, match=r"invalid privilege 'VM\.Teleport'"):
        cluster.access.add_role("Bad", ["VM.Teleport"])


def test_apply_config_creates_custom_roles_before_users(access):
    access.apply_config(
        {
            "roles": [{"roleid": "Viewer", "privs": ["VM.Audit"]}],
            "users": [{"userid": "vic@pve", "roles": [["/vms", "Viewer"]]}],
        }
    )
    assert set(effective_privileges(access, Identity("vic@pve"), "/vms/100")) == {"VM.Audit"}


def test_user_create_and_read_through_the_handlers(cluster):
    call(cluster, "POST", "/access/users", ROOT, userid="bot@pve", comment="robot")
    cluster.access.add_token("bot@pve", "ci", privsep=True, comment="pipeline")
    assert call(cluster, "GET", "/access/users/{userid}", ROOT, userid="bot@pve") == {
        "enable": 1,
        "expire": 0,
        "groups": [],
        "comment": "robot",
        "tokens": {"ci": {"privsep": 1, "expire": 0, "comment": "pipeline"}},
    }
    assert cluster.access.users["bot@pve"].password_hash is None  # no password: tokens only
    error = api_error(cluster, "POST", "/access/users", ROOT, userid="bot@pve")
    assert (error.status, error.message) == (500, "create user failed: user 'bot@pve' already exists")
    error = api_error(cluster, "POST", "/access/users", ROOT, userid="grp@pve", groups="admins")
    assert "no such group 'admins'" in error.message
    error = api_error(cluster, "GET", "/access/users/{userid}", ROOT, userid="ghost@pve")
    assert error.message == "no such user ('ghost@pve')"
