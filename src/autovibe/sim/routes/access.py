"""``/access/*``: login tickets, users, API tokens, ACLs, roles and the permission dump.

Handlers follow pve-access-control ``API2/AccessControl.pm``, ``API2/User.pm``, ``API2/ACL.pm`` and
``API2/Role.pm`` (shared/pve-api/SEMANTICS.md §2). The schema's permission check has already run when
a handler starts; the checks here are the ones PVE makes inside the handler. Booleans go out as 0/1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from autovibe.sim.access import AccessState, Token, User
from autovibe.sim.cluster import CLUSTER_NAME
from autovibe.sim.errors import param_error, permission_error, runtime_error
from autovibe.sim.privileges import (
    ROLES,
    effective_privileges,
    has_privileges,
    normalize_path,
    perm_modify_privs,
    permissions_map,
)
from autovibe.sim.registry import Call, Identity, route

# AccessControl.pm check_path: the object paths an ACL may be placed on.
_NAME = r"[A-Za-z0-9.\-_]+"
_ACL_PATH_RE = re.compile(
    rf"^/(?:access|access/groups(?:/{_NAME})?|access/realm(?:/{_NAME})?|cluster|cluster/ha"
    rf"|cluster/ha/groups(?:/{_NAME})?|mapping(?:/{_NAME}){{0,2}}|nodes(?:/{_NAME})?"
    rf"|pool|pool/{_NAME}(?:/{_NAME}){{0,2}}|sdn|sdn/(?:controllers|dns|ipams)(?:/[A-Za-z0-9_\-]+)?"
    rf"|sdn/zones(?:/{_NAME}(?:/{_NAME}(?:/[1-9][0-9]{{0,3}})?)?)?|storage(?:/{_NAME})?"
    rf"|vms(?:/[1-9][0-9]{{2,}})?)?$"
)


def _access(call: Call) -> AccessState:
    access: AccessState = call.cluster.access
    return access


def _caller(call: Call) -> Identity:
    if call.identity is None:  # only "world" endpoints run without one, and these are not
        raise runtime_error("no authenticated user")
    return call.identity


def _split_list(value: Any) -> list[str]:
    # PVE::Tools::split_list: commas, semicolons, whitespace and NULs all separate items.
    return [item for item in re.split(r"[,;\s\0]+", str(value or "")) if item]


# ---- tickets ---------------------------------------------------------------------------------


@route("GET", "/access/ticket")
def ticket_dummy(call: Call) -> None:
    """PVE's placeholder for formatters that render a login page."""


@route("POST", "/access/ticket")
def create_ticket(call: Call) -> dict[str, Any]:
    """Log in with a password or renew with a ticket; ``clustername`` only with Sys.Audit on ``/``."""
    p, access = call.params, _access(call)
    result = access.login(
        p["username"], p["password"], call.now, p.get("realm"), path=p.get("path"), privs=p.get("privs")
    )
    if "ticket" in result and has_privileges(access, Identity(result["username"]), "/", ["Sys.Audit"]):
        result["clustername"] = CLUSTER_NAME
    return result


# ---- permissions dump ------------------------------------------------------------------------


@route("GET", "/access/permissions")
def permissions(call: Call) -> dict[str, dict[str, int]]:
    """``{path: {priv: propagate}}`` for the caller, or for ``userid`` (a user or a token).

    Another user, or a token the caller does not own, needs Sys.Audit on ``/access``.
    """
    access, me, userid = _access(call), _caller(call), call.params.get("userid")
    target = me
    if userid is not None:
        owner, bang, name = str(userid).rpartition("!")
        target = Identity(owner, name) if bang else Identity(str(userid))
        own = userid == me.authid or bool(bang and owner == me.authid)
        if not own and not has_privileges(access, me, "/access", ["Sys.Audit"]):
            raise permission_error("/access", "Sys.Audit")
    return permissions_map(access, target, call.params.get("path"), pools=call.cluster.pools)


# ---- users and tokens ------------------------------------------------------------------------


def _token_info(token: Token) -> dict[str, Any]:
    info: dict[str, Any] = {"privsep": int(token.privsep), "expire": token.expire}
    if token.comment:
        info["comment"] = token.comment
    return info


def _user_row(user: User, full: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"userid": user.userid, "enable": int(user.enable), "expire": user.expire}
    realm = user.userid.rpartition("@")[2]
    if realm in ("pam", "pve"):
        row["realm-type"] = realm
    if user.comment:
        row["comment"] = user.comment
    if full:
        row["tokens"] = [{"tokenid": name, **_token_info(t)} for name, t in sorted(user.tokens.items())]
    return row


@route("GET", "/access/users")
def list_users(call: Call) -> list[dict[str, Any]]:
    """Users the caller may administer (User.Modify or Sys.Audit on /access/groups), always itself.

    ``enabled`` filters on the enable flag; ``full=1`` adds each user's tokens. No secret ever leaves.
    """
    access, me = _access(call), _caller(call)
    see_all = has_privileges(access, me, "/access/groups", ["User.Modify", "Sys.Audit"], any_=True)
    enabled, full = call.params.get("enabled"), bool(call.params.get("full"))
    return [
        _user_row(user, full)
        for userid, user in sorted(access.users.items())
        if (see_all or userid == me.userid) and (enabled is None or bool(enabled) == user.enable)
    ]


@route("POST", "/access/users")
def create_user(call: Call) -> None:
    """A new user (User.pm create_user). The simulator has no groups, and keeps no names or e-mail."""
    access, p = _access(call), call.params
    userid = p["userid"]
    if userid in access.users:
        raise runtime_error(f"create user failed: user '{userid}' already exists")
    groups = _split_list(p.get("groups"))
    if groups:
        raise runtime_error(f"create user failed: no such group '{groups[0]}'")
    access.add_user(
        userid,
        p.get("password"),
        roles=(),
        enable=bool(p.get("enable", True)),
        expire=int(p.get("expire", 0)),
        comment=p.get("comment") or None,
    )


@route("GET", "/access/users/{userid}")
def read_user(call: Call) -> dict[str, Any]:
    """One user's settings and tokens (``tokens``: name -> info); never a secret."""
    user = _existing_user(_access(call), call.params["userid"])
    row: dict[str, Any] = {"enable": int(user.enable), "expire": user.expire, "groups": []}
    if user.comment:
        row["comment"] = user.comment
    row["tokens"] = {name: _token_info(token) for name, token in sorted(user.tokens.items())}
    return row


def _existing_user(access: AccessState, userid: str) -> User:
    user = access.users.get(userid)
    if user is None:
        raise runtime_error(f"no such user ('{userid}')")
    return user


def _existing_token(access: AccessState, userid: str, name: str) -> Token:
    token = _existing_user(access, userid).tokens.get(name)
    if token is None:
        raise runtime_error(f"no such token '{name}' for user '{userid}'")
    return token


@route("GET", "/access/users/{userid}/token")
def list_tokens(call: Call) -> list[dict[str, Any]]:
    user = _existing_user(_access(call), call.params["userid"])
    return [{"tokenid": name, **_token_info(token)} for name, token in sorted(user.tokens.items())]


@route("GET", "/access/users/{userid}/token/{tokenid}")
def read_token(call: Call) -> dict[str, Any]:
    return _token_info(_existing_token(_access(call), call.params["userid"], call.params["tokenid"]))


@route("POST", "/access/users/{userid}/token/{tokenid}")
def generate_token(call: Call) -> dict[str, Any]:
    """A new token; the secret (``value``, a UUID) is shown only in this answer. ``privsep`` defaults to 1."""
    access, p = _access(call), call.params
    userid, name = p["userid"], p["tokenid"]
    if name in _existing_user(access, userid).tokens:
        raise param_error({"tokenid": "Token already exists."})
    secret = access.add_token(
        userid, name, privsep=bool(p.get("privsep", True)), expire=p.get("expire"), comment=p.get("comment")
    )
    token = access.users[userid].tokens[name]
    return {"full-tokenid": f"{userid}!{name}", "info": _token_info(token), "value": secret}


@route("PUT", "/access/users/{userid}/token/{tokenid}")
def update_token(call: Call) -> dict[str, Any]:
    """Change ``comment``, ``expire`` or ``privsep``; answers the updated token info."""
    p = call.params
    token = _existing_token(_access(call), p["userid"], p["tokenid"])
    if "privsep" in p:
        token.privsep = bool(p["privsep"])
    if "expire" in p:
        token.expire = int(p["expire"])
    if "comment" in p:
        token.comment = p["comment"] or None
    return _token_info(token)


@route("DELETE", "/access/users/{userid}/token/{tokenid}")
def remove_token(call: Call) -> None:
    """Delete the token and the ACL entries that name it."""
    access, p = _access(call), call.params
    _existing_token(access, p["userid"], p["tokenid"])
    access.remove_token(p["userid"], p["tokenid"])


# ---- ACLs and roles --------------------------------------------------------------------------


@route("GET", "/access/acl")
def read_acl(call: Call) -> list[dict[str, Any]]:
    """Every ACL entry on a path where the caller may modify permissions (all with Sys.Audit on /access)."""
    access, me = _access(call), _caller(call)
    audit = has_privileges(access, me, "/access", ["Sys.Audit"])
    pools = call.cluster.pools
    return [
        {"path": e.path, "type": e.type, "ugid": e.ugid, "roleid": e.roleid, "propagate": int(e.propagate)}
        for e in sorted(access.acls, key=lambda e: (e.path, e.type, e.ugid, e.roleid))
        if audit or has_privileges(access, me, e.path, perm_modify_privs(e.path), any_=True, pools=pools)
    ]


@route("PUT", "/access/acl")
def update_acl(call: Call) -> None:
    """Grant (or with ``delete=1`` revoke) ``roles`` on ``path`` to ``users`` and ``tokens``.

    Everything is checked before anything changes, as PVE writes user.cfg once under its lock.
    Without Permissions.Modify on the path (``perm-modify`` let the caller in through VM.Allocate and
    the like), a caller may hand out only privileges it holds there itself.
    """
    access, me, p = _access(call), _caller(call), call.params
    if not any(p.get(key) for key in ("users", "groups", "tokens")):
        raise param_error(
            {k: "either 'users', 'groups' or 'tokens' is required." for k in ("users", "groups", "tokens")}
        )
    path = normalize_path(p["path"])
    if path is None or (not p.get("delete") and not _ACL_PATH_RE.match(path)):
        raise param_error({"path": f"invalid ACL path '{p['path']}'"})
    roles, ugids = _split_list(p["roles"]), _acl_subjects(access, p)
    held = effective_privileges(access, me, path, pools=call.cluster.pools)
    for role in roles:
        privs = access.role_privileges(role)
        if privs is None:
            raise runtime_error(f"ACL update failed: role '{role}' does not exist")
        missing = sorted(privs - held.keys())
        if not p.get("delete") and "Permissions.Modify" not in held and missing:
            raise permission_error(path, missing[0])
    for role in roles:
        for ugid in ugids:
            if p.get("delete"):
                access.remove_acl(path, ugid, role)
            else:
                access.set_acl(path, ugid, role, bool(p.get("propagate", True)))


def _acl_subjects(access: AccessState, p: dict[str, Any]) -> list[str]:
    """The user and token ids of an ACL update, each checked to exist (the simulator has no groups)."""
    groups = _split_list(p.get("groups"))
    if groups:
        raise runtime_error(f"ACL update failed: group '{groups[0]}' does not exist")
    users = _split_list(p.get("users"))
    for userid in users:
        if userid not in access.users:
            raise runtime_error(f"ACL update failed: user '{userid}' does not exist")
    tokens = _split_list(p.get("tokens"))
    for tokenid in tokens:
        userid, _, name = tokenid.rpartition("!")
        if not access.has_ugid(tokenid):
            raise runtime_error(f"ACL update failed: no such token '{name}' for user '{userid}'")
    return users + tokens


@route("GET", "/access/roles")
def list_roles(call: Call) -> list[dict[str, Any]]:
    """Every role and its privileges as PVE lists them (comma-separated); built-in ones are ``special``."""
    builtin = [
        {"roleid": role, "privs": ",".join(sorted(privs)), "special": 1} for role, privs in ROLES.items()
    ]
    custom = [
        {"roleid": role, "privs": ",".join(sorted(privs))}
        for role, privs in sorted(_access(call).roles.items())
    ]
    return builtin + custom


def _role_change(failed: str, action: Callable[[], None]) -> None:
    """Run an ``AccessState`` role change; its ValueError becomes PVE's die under the user.cfg lock
    (500 ``<failed>: <reason>``, as ``lock_user_config`` words it)."""
    try:
        action()
    except ValueError as exc:
        raise runtime_error(f"{failed}: {exc}") from None


@route("GET", "/access/roles/{roleid}")
def read_role(call: Call) -> dict[str, int]:
    """``{privilege: 1}`` for a built-in or custom role (Role.pm read_role)."""
    roleid = call.params["roleid"]
    privs = _access(call).role_privileges(roleid)
    if privs is None:
        raise runtime_error(f"role '{roleid}' does not exist")
    return dict.fromkeys(sorted(privs), 1)


@route("POST", "/access/roles")
def create_role(call: Call) -> None:
    """A custom role; ids in the ``PVE`` namespace are refused like PVE does (a parameter error)."""
    p, access = call.params, _access(call)
    if re.match(r"^PVE", p["roleid"], re.IGNORECASE):
        raise param_error(
            {"roleid": "cannot use role ID starting with the (case-insensitive) 'PVE' namespace"}
        )
    _role_change("create role failed", lambda: access.add_role(p["roleid"], _split_list(p.get("privs"))))


@route("PUT", "/access/roles/{roleid}")
def update_role(call: Call) -> None:
    """Replace a custom role's privileges, or add to them with ``append=1``; built-in roles are fixed."""
    p, access = call.params, _access(call)
    privs, append = _split_list(p.get("privs")), bool(p.get("append"))
    _role_change("update role failed", lambda: access.set_role_privileges(p["roleid"], privs, append=append))


@route("DELETE", "/access/roles/{roleid}")
def delete_role(call: Call) -> None:
    """Delete a custom role (ACL entries naming it stay and grant nothing, as on PVE)."""
    access, roleid = _access(call), call.params["roleid"]
    _role_change("delete role failed", lambda: access.remove_role(roleid))
