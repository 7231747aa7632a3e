"""PVE 8 privileges and built-in roles, ACL evaluation, and the schema's ``permissions`` checks.

How PVE decides (shared/pve-api/SEMANTICS.md §2, pve-access-control ``AccessControl.pm`` ``roles`` and
``RPCEnvironment.pm`` ``permissions``/``exec_api2_perm_check``):

- ACLs are walked from ``/`` down to the path. At each level, the entries naming the user (or token)
  that apply there (every entry on the path itself, only ``propagate`` entries on ancestors) replace
  whatever the levels above gave. ``NoAccess`` wins over every other role on the same level.
- A guest or storage that belongs to a pool also gets the roles granted on ``/pool/<id>``, never
  propagated and never overriding a role or ``NoAccess`` from the regular ACLs.
- ``root@pam`` has every privilege. A token without privilege separation has its user's privileges;
  a privsep token the intersection of its own ACLs and its user's (root's privsep tokens: only its own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autovibe.sim.errors import SimApiError, permission_error, runtime_error
from autovibe.sim.registry import Identity

if TYPE_CHECKING:
    from autovibe.sim.access import AccessState

ROOT_USERID = "root@pam"

# Privilege groups as AccessControl.pm lays them out: "root" privileges only Administrator has,
# "admin"/"user"/"audit" build the PVE<Group>Admin, PVE<Group>User and PVEAuditor roles.
# fmt: off
_PRIVGROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "VM": {
        "root": (),
        "admin": (
            "VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
            "VM.Config.HWType", "VM.Config.Options", "VM.Allocate", "VM.Clone", "VM.Migrate",
            "VM.Monitor", "VM.Snapshot", "VM.Snapshot.Rollback",
        ),
        "user": ("VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.PowerMgmt"),
        "audit": ("VM.Audit",),
    },
    "Sys": {
        "root": ("Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"),
        "admin": ("Sys.Console", "Sys.Syslog"),
        "user": (),
        "audit": ("Sys.Audit",),
    },
    "Datastore": {
        "root": (),
        "admin": ("Datastore.Allocate", "Datastore.AllocateTemplate"),
        "user": ("Datastore.AllocateSpace",),
        "audit": ("Datastore.Audit",),
    },
    "SDN": {
        "root": (),
        "admin": ("SDN.Allocate", "SDN.Audit"),
        "user": ("SDN.Use",),
        "audit": ("SDN.Audit",),
    },
    "User": {
        "root": ("Realm.Allocate",),
        "admin": ("User.Modify", "Group.Allocate", "Realm.AllocateUser"),
        "user": (),
        "audit": (),
    },
    "Pool": {"root": (), "admin": ("Pool.Allocate",), "user": ("Pool.Audit",), "audit": ("Pool.Audit",)},
    "Mapping": {
        "root": (),
        "admin": ("Mapping.Modify",),
        "user": ("Mapping.Use",),
        "audit": ("Mapping.Audit",),
    },
}
# fmt: on


def _build_roles() -> dict[str, frozenset[str]]:
    roles: dict[str, set[str]] = {"NoAccess": set(), "PVEAdmin": set(), "PVEAuditor": set()}
    everything = {"Permissions.Modify"}  # in no group: only Administrator (and root@pam) has it
    for cat, group in _PRIVGROUPS.items():
        everything.update(*group.values())
        roles.setdefault(f"PVE{cat}Admin", set()).update(group["admin"], group["user"], group["audit"])
        roles["PVEAdmin"].update(group["admin"], group["user"], group["audit"])
        if group["user"]:
            roles[f"PVE{cat}User"] = set(group["user"]) | set(group["audit"])
        roles["PVEAuditor"].update(group["audit"])
    # PVE keeps Mapping.Modify from PVEAdmin: only Administrator and PVEMappingAdmin may use it.
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    roles["Administrator"] = everything
    return {name: frozenset(privs) for name, privs in sorted(roles.items())}


ROLES: Mapping[str, frozenset[str]] = _build_roles()
PRIVILEGES: frozenset[str] = ROLES["Administrator"]

# Paths GET /access/permissions always considers (RPCEnvironment.pm get_effective_permissions).
_DEFAULT_PATHS = ("/", "/access", "/access/groups", "/mapping", "/nodes", "/pool", "/sdn", "/storage", "/vms")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9.\-_/]+$")

Pools = Mapping[str, Mapping[str, Any]]
"""Pool membership as the cluster keeps it: ``{poolid: {"vms": [100, ...], "storage": ["local", ...]}}``."""


def normalize_path(path: str) -> str | None:
    """PVE's ACL path normalisation: one leading slash, no doubled or trailing ones; None if invalid."""
    if not path:
        return None
    path = re.sub(r"/+", "/", "/" + path).rstrip("/") or "/"
    return path if _PATH_CHARS.match(path) else None


def _ancestry(path: str) -> list[str]:
    """``/vms/100`` -> ``["/", "/vms", "/vms/100"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _acl_roles(access: AccessState, ugid: str, path: str) -> dict[str, bool]:
    """Roles (role -> propagate) the ACLs grant ``ugid`` itself on ``path``: no pools, no tokens' users."""
    levels = _ancestry(path)
    roles: dict[str, bool] = {}
    for depth, level in enumerate(levels):
        final = depth == len(levels) - 1
        here = {
            e.roleid: e.propagate
            for e in access.acls
            if e.path == level and e.ugid == ugid and (final or e.propagate)
        }
        if here:
            roles = here
    if "NoAccess" in roles:
        return {"NoAccess": roles["NoAccess"]}
    return roles


def _pool_paths(pool: Mapping[str, Any]) -> list[str]:
    return [f"/vms/{v}" for v in pool.get("vms", [])] + [f"/storage/{s}" for s in pool.get("storage", [])]


def _compile(access: AccessState, ugid: str, path: str, pools: Pools | None) -> dict[str, bool]:
    roles = _acl_roles(access, ugid, path)
    if "NoAccess" not in roles:
        for poolid, pool in (pools or {}).items():
            if path not in _pool_paths(pool):
                continue
            pool_roles = _acl_roles(access, ugid, f"/pool/{poolid}")
            if "NoAccess" in pool_roles:
                roles = {"NoAccess": False}
                break
            for role in pool_roles:
                roles.setdefault(role, False)  # pool-derived roles never propagate
    privs: dict[str, bool] = {}
    for role, propagate in roles.items():
        for priv in access.role_privileges(role) or frozenset():
            privs[priv] = privs.get(priv, False) or propagate
    return privs


def effective_privileges(
    access: AccessState, identity: Identity, path: str, *, pools: Pools | None = None
) -> dict[str, bool]:
    """Privileges ``identity`` holds on ``path``, each mapped to whether it propagates to sub-paths.

    Pass ``pools`` (the cluster's pool membership) so roles granted on ``/pool/<id>`` reach its members.

    >>> effective_privileges(access, Identity("alice@pve"), "/vms/100")
    {'VM.Audit': True, 'VM.PowerMgmt': True, ...}
    """
    norm = normalize_path(path)
    user = access.users.get(identity.userid)
    if norm is None:
        return {}
    if identity.tokenid is None:
        if identity.userid == ROOT_USERID:
            return dict.fromkeys(PRIVILEGES, True)
        return _compile(access, identity.userid, norm, pools) if user is not None else {}
    token = user.tokens.get(identity.tokenid) if user is not None else None
    if token is None:
        return {}
    if not token.privsep:
        return effective_privileges(access, Identity(identity.userid), norm, pools=pools)
    own = _compile(access, identity.authid, norm, pools)
    if identity.userid == ROOT_USERID:
        return own
    users = effective_privileges(access, Identity(identity.userid), norm, pools=pools)
    return {priv: prop and users[priv] for priv, prop in own.items() if priv in users}


def has_privileges(
    access: AccessState,
    identity: Identity,
    path: str,
    privs: Iterable[str],
    *,
    any_: bool = False,
    pools: Pools | None = None,
) -> bool:
    """Whether ``identity`` holds all of ``privs`` on ``path`` (one of them with ``any_=True``)."""
    held = effective_privileges(access, identity, path, pools=pools)
    return any(p in held for p in privs) if any_ else all(p in held for p in privs)


def permissions_map(
    access: AccessState, identity: Identity, path: str | None, *, pools: Pools | None = None
) -> dict[str, dict[str, int]]:
    """The ``GET /access/permissions`` answer: ``{path: {privilege: propagate 1|0}}``.

    With ``path`` only that path (even when empty). Without it, like PVE's get_effective_permissions:
    the top-level paths, every ACL path and every pool and pool member, leaving out paths where
    ``identity`` holds nothing.
    """
    if path is not None:
        return {path: _as_ints(effective_privileges(access, identity, path, pools=pools))}
    paths = set(_DEFAULT_PATHS) | {e.path for e in access.acls}
    for poolid, pool in (pools or {}).items():
        paths.update([f"/pool/{poolid}", *_pool_paths(pool)])
    result = {}
    for candidate in sorted(paths):
        privs = effective_privileges(access, identity, candidate, pools=pools)
        if privs:
            result[candidate] = _as_ints(privs)
    return result


def _as_ints(privs: Mapping[str, bool]) -> dict[str, int]:
    return {priv: int(prop) for priv, prop in sorted(privs.items())}


# Which privileges show in which section of the login ``cap`` (RPCEnvironment.pm compute_api_permission).
_CAP_SECTIONS = {
    "vms": re.compile(r"^(VM\.|Permissions\.Modify)"),
    "access": re.compile(r"^((User|Group)\.|Permissions\.Modify)"),
    "storage": re.compile(r"^(Datastore\.|Permissions\.Modify)"),
    "nodes": re.compile(r"^(Sys\.|Permissions\.Modify)"),
    "sdn": re.compile(r"^(SDN\.|Permissions\.Modify)"),
    "dc": re.compile(r"^(Sys\.Audit|Sys\.Modify|SDN\.)"),
    "mapping": re.compile(r"^(Mapping\.|Permissions\.Modify)"),
}


def capabilities(access: AccessState, identity: Identity) -> dict[str, dict[str, int]]:
    """The ``cap`` object of a login answer: per GUI section, the privileges held somewhere there."""
    cap: dict[str, dict[str, int]] = {section: {} for section in _CAP_SECTIONS}
    paths = ["/", "/nodes", "/access/groups", "/vms", "/storage", "/sdn", "/mapping"]
    paths += sorted({e.path for e in access.acls} - set(paths))
    for path in paths:
        top = path.split("/")[1] or "dc"
        for priv in effective_privileges(access, identity, path):
            for section in _cap_sections(top, priv):
                cap[section][priv] = 1
    return cap


def _cap_sections(top: str, priv: str) -> list[str]:
    if top == "pool":  # a pool's privileges count for the guests and storages in it
        if priv == "Permissions.Modify":
            return ["vms", "storage"]
        return ["vms"] if priv.startswith("VM.") else ["storage"] if priv.startswith("Datastore.") else []
    pattern = _CAP_SECTIONS.get(top)
    return [top] if pattern is not None and pattern.match(priv) else []


# ---- the schema's permission checks ------------------------------------------------------------


def check_permissions(
    access: AccessState,
    identity: Identity | None,
    permissions: Mapping[str, Any] | None,
    params: Mapping[str, Any],
    *,
    pools: Pools | None = None,
) -> None:
    """Raise the 403 PVE would for ``identity`` calling an endpoint with this ``permissions`` object.

    Follows HTTPServer.pm check_api2_permissions: ``user: world`` passes anyone, then root@pam passes
    everything, ``user: all`` passes any authenticated caller, ``check`` is evaluated (see
    ``_Checker``), and anything else (no object, an unknown shape) is for root@pam only.
    """
    if permissions is not None and permissions.get("user") == "world":
        return
    if identity is None:
        raise SimApiError(403, "Permission check failed (user != null)")
    if identity.authid == ROOT_USERID:
        return
    if permissions is None:
        raise SimApiError(403, "Permission check failed (user != root@pam)")
    if permissions.get("user") == "all":
        return
    check = permissions.get("check")
    if isinstance(check, list) and check:
        _Checker(access, identity, params, pools).run(check, noerr=False)
        return
    raise SimApiError(403, "Permission check failed")


_ALLOCATE_PRIV = {"/storage/": "Datastore.Allocate", "/vms/": "VM.Allocate", "/pool/": "Pool.Allocate"}


def perm_modify_privs(path: str) -> list[str]:
    """Any one of these lets a caller change ACLs on ``path`` (RPCEnvironment.pm check_perm_modify)."""
    extra = [priv for prefix, priv in _ALLOCATE_PRIV.items() if path.startswith(prefix)]
    return ["Permissions.Modify", *extra]


def _template_replace(template: str, params: Mapping[str, Any]) -> str:
    # Perl's `$data->{$1} || '-'`: a missing, empty or "0" value becomes "-".
    def fill(match: re.Match[str]) -> str:
        value = params.get(match.group(1))
        return "-" if value is None or str(value) in ("", "0") else str(value)

    return re.sub(r"\{([^}]+)\}", fill, template)


@dataclass
class _Checker:
    """RPCEnvironment.pm exec_api2_perm_check. ``noerr`` returns False instead of raising.

    Like PVE, the members of an ``and`` are checked with errors on, so a failing ``and`` inside an
    ``or`` raises its own, more specific, message instead of trying the next alternative.
    Approximations (the simulator has no groups): ``userid-group`` passes only with one of its
    privileges on ``/access/groups``; with ``groups_param: create`` the user need not exist yet.
    """

    access: AccessState
    identity: Identity
    params: Mapping[str, Any]
    pools: Pools | None

    def run(self, check: list[Any], *, noerr: bool) -> bool:
        head, rest = check[0], check[1:]
        if head == "and":
            for sub in rest:
                self.run(sub, noerr=False)
            return True
        if head == "or":
            if any(self.run(sub, noerr=True) for sub in rest):
                return True
            return self._fail(noerr, None)
        if head == "perm":
            return self._perm(rest[0], rest[1], dict(zip(rest[2::2], rest[3::2], strict=False)), noerr)
        if head == "perm-modify":
            return self._perm_modify(rest[0], noerr)
        if head == "userid-param":
            return self._userid_param(rest[0], noerr)
        if head == "userid-group":
            return self._userid_group(rest[0], dict(zip(rest[1::2], rest[2::2], strict=False)), noerr)
        return self._fail(noerr, None)  # unknown test: only root@pam (already let through) may call

    def _fail(self, noerr: bool, error: SimApiError | None) -> bool:
        if noerr:
            return False
        raise error or SimApiError(403, "Permission check failed")

    def _held(self, path: str | None) -> dict[str, bool]:
        if path is None:
            return {}
        return effective_privileges(self.access, self.identity, path, pools=self.pools)

    def _perm(self, template: str, privs: list[str], options: dict[str, Any], noerr: bool) -> bool:
        required = options.get("require_param")
        if required is not None and self.params.get(required) is None:
            return self._fail(noerr, None)
        path = normalize_path(_template_replace(template, self.params))
        return self._privs(path, privs, bool(options.get("any")), noerr)

    def _privs(self, path: str | None, privs: list[str], any_: bool, noerr: bool) -> bool:
        held = self._held(path)
        if any_:
            if any(p in held for p in privs):
                return True
            return self._fail(noerr, permission_error(str(path), "|".join(privs)))
        missing = [p for p in privs if p not in held]
        return self._fail(noerr, permission_error(str(path), missing[0])) if missing else True

    def _perm_modify(self, template: str, noerr: bool) -> bool:
        path = normalize_path(_template_replace(template, self.params))
        return self._privs(path, perm_modify_privs(path or ""), True, noerr)

    def _user_exists(self, userid: Any, noerr: bool) -> bool:
        if isinstance(userid, str) and userid in self.access.users:
            return True
        return self._fail(noerr, runtime_error(f"no such user ('{userid}')"))

    def _userid_param(self, subtest: str, noerr: bool) -> bool:
        userid = self.params.get("userid")
        if subtest == "self":
            if not self._user_exists(userid, noerr):
                return False
            # A token is not its user here: PVE compares the full auth id (user@realm!token).
            return userid == self.identity.authid or self._fail(noerr, None)
        if subtest == "Realm.AllocateUser":
            realm = str(userid).rpartition("@")[2]
            return self._privs(f"/access/realm/{realm}", ["Realm.AllocateUser"], False, noerr)
        return self._fail(noerr, None)

    def _userid_group(self, privs: list[str], options: dict[str, Any], noerr: bool) -> bool:
        if options.get("groups_param") != "create" and not self._user_exists(
            self.params.get("userid"), noerr
        ):
            return False
        if any(p in self._held("/access/groups") for p in privs):
            return True
        return self._fail(noerr, None)
