"""The PVE privileges autovibe needs, derived from PVE 8.4's own permission rules (pure + one reader).

:data:`USED_ENDPOINTS` lists every API call autovibe's code makes (``tests/unit/cluster`` checks the
code against it). Each endpoint's ``permissions`` rule comes from the PVE 8.4 schema, copied for just
these endpoints into ``privileges_data.json`` by ``scripts/gen_privileges.py`` (this package must not
import the simulator, which ships the schema). Some checks PVE makes inside the handler, where the
schema cannot show them; :data:`HANDLER_CHECKS` adds those, in the same rule language, each with the
PVE function it comes from.

A rule is a tree: ``["perm", PATH, [PRIVS]]`` needs every privilege (one of them with ``"any", 1``),
``["and", ...]``/``["or", ...]`` combine, ``"require_param", P`` makes an alternative count only when
parameter P is sent, ``userid-param``/``userid-group``/``perm-modify`` name the access-management
checks. :func:`requirements` turns each call into alternatives (sets of ``(path, privilege)``);
:func:`resolve` picks, for every call, an alternative that is already needed anyway, so an ``any``
rule adds nothing when one of its privileges is required elsewhere. Paths are then folded to the ACL
path to grant: ``/vms/{vmid}`` becomes ``/vms`` granted with propagation; a literal path such as ``/``
is granted on itself, without propagation.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from autovibe.cluster.models import RequiredPrivilege

DATA_FILE = "privileges_data.json"

# Features, as the doctor names them next to each privilege.
CLUSTER = "cluster view and doctor"
TASKS = "task progress"
MACHINES = "machines"
CHECKPOINTS = "checkpoints"
USAGE = "usage"
NETWORK = "network profiles"
SETUP = "pve role --apply"

_VM = "/nodes/{node}/qemu/{vmid}"


@dataclass(frozen=True)
class Use:
    """One API call: method, PVE schema path, the feature it serves and the parameters autovibe sends
    that matter to a permission check (``require_param``, or a handler checking by parameter)."""

    method: str
    path: str
    feature: str
    params: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


USED_ENDPOINTS: tuple[Use, ...] = (
    # cluster (cluster/service.py, cluster/guests.py, machines/placement): the status view, the
    # doctor's clock and privilege checks, the inventory every service plans from
    Use("GET", "/version", CLUSTER),
    Use("GET", "/nodes", CLUSTER),
    Use("GET", "/cluster/resources", CLUSTER, ("type",)),
    Use("GET", "/nodes/{node}/time", CLUSTER),
    Use("GET", "/access/permissions", CLUSTER),
    # tasks (pve/tasks.py): every step that starts a PVE task polls it, and reads the log tail on failure
    Use("GET", "/nodes/{node}/tasks/{upid}/status", TASKS),
    Use("GET", "/nodes/{node}/tasks/{upid}/log", TASKS, ("start", "limit")),
    # machines (machines/deploy.py, fleet.py, service.py, scheduler.py; cluster/guests.py for the demo):
    # clone a template (or a checkpoint, with snapname), configure, resize, power, delete
    Use("GET", "/cluster/nextid", MACHINES),
    Use(
        "POST",
        f"{_VM}/clone",
        MACHINES,
        ("newid", "name", "full", "description", "target", "storage", "snapname"),
    ),
    Use("GET", f"{_VM}/config", MACHINES),
    Use("PUT", f"{_VM}/config", MACHINES, ("cores", "memory", "tags", "description", "net0")),
    Use("PUT", f"{_VM}/resize", MACHINES, ("disk", "size")),
    Use("GET", f"{_VM}/status/current", MACHINES),
    Use("POST", f"{_VM}/status/start", MACHINES),
    Use("POST", f"{_VM}/status/stop", MACHINES),
    Use("POST", f"{_VM}/status/shutdown", MACHINES),
    Use("POST", f"{_VM}/status/reboot", MACHINES),
    Use("DELETE", _VM, MACHINES, ("purge", "destroy-unreferenced-disks")),
    # checkpoints (checkpoints/service.py, prune.py): snapshots with RAM, diffs against the live config,
    # restore (rollback), prune; /storage tells which storages keep RAM state
    Use("GET", f"{_VM}/snapshot", CHECKPOINTS),
    Use("POST", f"{_VM}/snapshot", CHECKPOINTS, ("snapname", "vmstate", "description")),
    Use("GET", f"{_VM}/snapshot/{{snapname}}/config", CHECKPOINTS),
    Use("GET", f"{_VM}/config", CHECKPOINTS),
    Use("POST", f"{_VM}/snapshot/{{snapname}}/rollback", CHECKPOINTS, ("start",)),
    Use("DELETE", f"{_VM}/snapshot/{{snapname}}", CHECKPOINTS),
    Use("GET", "/storage", CHECKPOINTS),
    # usage (usage/sampler.py): guests' and storages' counters, and the volumes on each storage
    Use("GET", "/cluster/resources", USAGE, ("type",)),
    Use("GET", "/nodes/{node}/storage/{storage}/content", USAGE),
    # network (network/service.py): node addresses and bridges, the firewall switches, a VM's net0,
    # firewall options and rules, and the cluster-wide IP sets the rules point at
    Use("GET", "/cluster/status", NETWORK),
    Use("GET", "/nodes/{node}/network", NETWORK, ("type",)),
    Use("GET", "/cluster/firewall/options", NETWORK),
    Use("GET", "/nodes/{node}/firewall/options", NETWORK),
    Use("GET", f"{_VM}/config", NETWORK),
    Use("PUT", f"{_VM}/config", NETWORK, ("net0",)),
    Use("GET", f"{_VM}/firewall/options", NETWORK),
    Use("PUT", f"{_VM}/firewall/options", NETWORK),
    Use("GET", f"{_VM}/firewall/rules", NETWORK),
    Use("POST", f"{_VM}/firewall/rules", NETWORK),
    Use("DELETE", f"{_VM}/firewall/rules/{{pos}}", NETWORK),
    Use("GET", "/cluster/firewall/ipset", NETWORK),
    Use("POST", "/cluster/firewall/ipset", NETWORK, ("name", "comment")),
    Use("GET", "/cluster/firewall/ipset/{name}", NETWORK),
    Use("POST", "/cluster/firewall/ipset/{name}", NETWORK, ("cidr",)),
    Use("DELETE", "/cluster/firewall/ipset/{name}/{cidr}", NETWORK),
)
"""Every PVE call autovibe makes at run time (``pve role --apply`` aside: :data:`ADMIN_ENDPOINTS`)."""

_TOKEN = "/access/users/{userid}/token/{tokenid}"
ADMIN_ENDPOINTS: tuple[Use, ...] = (
    # cluster/access.py apply_access: what `autovibe pve role --apply` calls with admin credentials
    Use("GET", "/access/permissions", SETUP, ("path",)),
    Use("GET", "/access/roles", SETUP),
    Use("POST", "/access/roles", SETUP, ("roleid", "privs")),
    Use("PUT", "/access/roles/{roleid}", SETUP, ("privs",)),
    Use("GET", "/access/users", SETUP, ("full",)),
    Use("POST", "/access/users", SETUP, ("userid", "comment")),
    Use("POST", _TOKEN, SETUP, ("privsep", "comment")),
    Use("PUT", _TOKEN, SETUP, ("privsep",)),
    Use("GET", "/access/acl", SETUP),
    Use("PUT", "/access/acl", SETUP, ("path", "roles", "users", "tokens", "propagate")),
)


@dataclass(frozen=True)
class HandlerCheck:
    """A check PVE makes inside the handler (not in the schema); ``when`` = only if that parameter is
    sent. ``source`` names the PVE function."""

    rule: tuple[Any, ...]
    source: str
    when: str | None = None


def _perm(path: str, *privs: str, any_: bool = False) -> tuple[Any, ...]:
    return ("perm", path, list(privs), "any", 1) if any_ else ("perm", path, list(privs))


_CONFIG_KEY = "qemu-server API2/Qemu.pm $check_vm_modify_config_perm"
HANDLER_CHECKS: Mapping[tuple[str, str], tuple[HandlerCheck, ...]] = {
    # The schema lets any VM.Config.* privilege in; the handler then wants the one for each key sent.
    ("PUT", f"{_VM}/config"): (
        HandlerCheck(_perm("/vms/{vmid}", "VM.Config.CPU"), _CONFIG_KEY, "cores"),
        HandlerCheck(_perm("/vms/{vmid}", "VM.Config.Memory"), _CONFIG_KEY, "memory"),
        HandlerCheck(_perm("/vms/{vmid}", "VM.Config.Options"), _CONFIG_KEY, "description"),
        HandlerCheck(
            _perm("/vms/{vmid}", "VM.Config.Options"), "pve-guest-common assert_tag_permissions", "tags"
        ),
        HandlerCheck(_perm("/vms/{vmid}", "VM.Config.Network"), _CONFIG_KEY, "net0"),
        # The bridge (or SDN vnet) a NIC is attached to: zone "localnetwork" for a plain bridge.
        HandlerCheck(
            _perm("/sdn/zones/{zone}/{bridge}", "SDN.Use"), "pve-guest-common check_vnet_access", "net0"
        ),
    ),
    ("POST", f"{_VM}/clone"): (
        # Space on the target storage (or on each disk's own storage when none is given).
        HandlerCheck(
            _perm("/storage/{storage}", "Datastore.AllocateSpace"),
            "qemu-server API2/Qemu.pm $check_storage_access_clone",
        ),
    ),
    ("PUT", f"{_VM}/resize"): (
        HandlerCheck(_perm("/storage/{storage}", "Datastore.AllocateSpace"), "qemu-server resize_vm"),
    ),
    # Answers filtered per object: without these autovibe would not see its guests, nodes, storages.
    ("GET", "/cluster/resources"): (
        HandlerCheck(_perm("/vms/{vmid}", "VM.Audit"), "pve-manager API2/Cluster.pm resources"),
        HandlerCheck(_perm("/nodes/{node}", "Sys.Audit"), "pve-manager API2/Cluster.pm resources"),
        HandlerCheck(_perm("/storage/{storage}", "Datastore.Audit"), "pve-manager API2/Cluster.pm resources"),
    ),
    ("GET", "/storage"): (
        HandlerCheck(
            _perm("/storage/{storage}", "Datastore.Audit", "Datastore.AllocateSpace", any_=True),
            "pve-storage API2/Storage/Config.pm index",
        ),
    ),
    ("GET", "/nodes/{node}/network"): (
        HandlerCheck(
            (
                "or",
                _perm("/nodes/{node}", "Sys.Audit"),
                _perm("/sdn/zones/{zone}/{bridge}", "SDN.Use", "SDN.Audit", "SDN.Allocate", any_=True),
            ),
            "pve-manager API2/Network.pm index",
        ),
    ),
    # Without User.Modify or Sys.Audit on /access/groups the list shows the caller only.
    ("GET", "/access/users"): (
        HandlerCheck(("userid-group", ["User.Modify", "Sys.Audit"]), "pve-access-control API2/User.pm index"),
    ),
}


# ---- the schema's rules (the one reader) -------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An endpoint's ``permissions`` object and whether API tokens may call it at all."""

    permissions: Mapping[str, Any]
    allowtoken: bool = True


@cache
def schema_rules() -> Mapping[str, Rule]:
    """``"METHOD /path" -> Rule`` for :data:`USED_ENDPOINTS` and :data:`ADMIN_ENDPOINTS`, from the
    generated ``privileges_data.json``."""
    text = resources.files("autovibe.cluster").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_rules(json.loads(text))


def parse_rules(data: Mapping[str, Any]) -> dict[str, Rule]:
    return {
        key: Rule(dict(entry.get("permissions") or {}), bool(entry.get("allowtoken", True)))
        for key, entry in data["endpoints"].items()
    }


# ---- requirements (pure) -----------------------------------------------------------------------

Need = tuple[str, str]  # (path template, privilege)
Alternative = frozenset[Need]


@dataclass(frozen=True)
class Requirement:
    """One permission test a call must pass: any one of ``alternatives`` (each a set of needs) will do.
    An empty tuple means the call can never pass (root@pam only)."""

    use: Use
    alternatives: tuple[Alternative, ...]
    source: str = "schema"


class UnknownRule(ValueError):
    """A permission test this module does not understand (a new PVE version?)."""


_ALLOCATE_PRIV = {"/storage/": "Datastore.Allocate", "/vms/": "VM.Allocate", "/pool/": "Pool.Allocate"}


def requirements(
    uses: Iterable[Use] = USED_ENDPOINTS,
    rules: Mapping[str, Rule] | None = None,
    *,
    bindings: Mapping[str, str] | None = None,
    handler_checks: Mapping[tuple[str, str], Sequence[HandlerCheck]] = HANDLER_CHECKS,
) -> list[Requirement]:
    """The permission tests of ``uses``: the schema rule of each, then its handler checks.

    ``bindings`` fills placeholders known in advance (``{path}`` of an ACL change, ``{realm}``).
    Raises ``KeyError`` for an endpoint missing from ``rules`` and ``UnknownRule`` for a test shape
    PVE 8.4 does not have.
    """
    rules = schema_rules() if rules is None else rules
    bound = dict(bindings or {})
    found: list[Requirement] = []
    for use in uses:
        sent = frozenset(use.params)
        rule = rules[use.key].permissions
        found.append(Requirement(use, _bind(_top(rule, sent), bound)))
        for extra in handler_checks.get((use.method, use.path), ()):
            if extra.when is None or extra.when in sent:
                alternatives = _bind(_alternatives(list(extra.rule), sent), bound)
                found.append(Requirement(use, alternatives, extra.source))
    return found


def _top(rule: Mapping[str, Any], sent: frozenset[str]) -> tuple[Alternative, ...]:
    if rule.get("user") in ("all", "world"):
        return (frozenset(),)  # any logged-in caller (the handler may filter: see HANDLER_CHECKS)
    check = rule.get("check")
    if not isinstance(check, list) or not check:
        return ()  # no rule at all: PVE lets only root@pam in
    return _alternatives(check, sent)


def _alternatives(check: list[Any], sent: frozenset[str]) -> tuple[Alternative, ...]:
    """RPCEnvironment.pm exec_api2_perm_check as alternatives (disjunctive normal form)."""
    head, rest = check[0], check[1:]
    if head == "and":
        parts = [_alternatives(list(sub), sent) for sub in rest]
        return tuple(frozenset().union(*combo) for combo in itertools.product(*parts))
    if head == "or":
        return tuple(dict.fromkeys(alt for sub in rest for alt in _alternatives(list(sub), sent)))
    if head == "perm":
        path, privs = str(rest[0]), [str(p) for p in rest[1]]
        options = dict(zip(rest[2::2], rest[3::2], strict=False))
        required = options.get("require_param")
        if required is not None and required not in sent:
            return ()  # e.g. the /pool/{pool} alternative of a clone: autovibe sends no pool
        if options.get("any"):
            return tuple(frozenset({(path, priv)}) for priv in privs)
        return (frozenset((path, priv) for priv in privs),)
    if head == "perm-modify":
        path = str(rest[0])
        privs = [
            "Permissions.Modify",
            *(p for prefix, p in _ALLOCATE_PRIV.items() if path.startswith(prefix)),
        ]
        return tuple(frozenset({(path, priv)}) for priv in privs)
    if head == "userid-param":
        if rest[0] == "self":
            return ()  # acting on one's own user: autovibe never creates tokens for itself
        return (frozenset({("/access/realm/{realm}", str(rest[0]))}),)
    if head == "userid-group":
        # A user's groups, or /access/groups for all of them (autovibe's user is in no group).
        return tuple(frozenset({("/access/groups", str(priv))}) for priv in rest[0])
    raise UnknownRule(f"unknown permission test {head!r}")


def _bind(alternatives: tuple[Alternative, ...], bindings: Mapping[str, str]) -> tuple[Alternative, ...]:
    if not bindings:
        return alternatives

    def fill(path: str) -> str:
        for name, value in bindings.items():
            path = path.replace(f"{{{name}}}", value)
        return path

    return tuple(frozenset((fill(path), priv) for path, priv in alt) for alt in alternatives)


def resolve(found: Sequence[Requirement]) -> dict[Need, tuple[str, ...]]:
    """The needs that pass every requirement, each with the features it serves.

    Requirements with one alternative are taken first; for the others an alternative already covered
    is preferred, else the first one is taken (PVE lists the narrowest privilege first). Raises
    ``ValueError`` naming a call no alternative can pass.
    """
    chosen: dict[Need, list[str]] = {}

    def take(alternative: Alternative, feature: str) -> None:
        for need in sorted(alternative):
            features = chosen.setdefault(need, [])
            if feature not in features:
                features.append(feature)

    for req in found:
        if not req.alternatives:
            raise ValueError(f"{req.use.key} is for root@pam only ({req.source}): autovibe cannot call it")
        if len(req.alternatives) == 1:
            take(req.alternatives[0], req.use.feature)
    for req in found:
        if len(req.alternatives) > 1:
            covered = [alt for alt in req.alternatives if alt <= chosen.keys()]
            # Credit the feature to what it already relies on, so "any VM.Config.*" reads as the
            # privilege of the key it sends rather than the first one PVE lists.
            own = [alt for alt in covered if all(req.use.feature in chosen[need] for need in alt)]
            take((own or covered or req.alternatives)[0], req.use.feature)
    return {need: tuple(features) for need, features in chosen.items()}


# ---- per ACL path ------------------------------------------------------------------------------


def acl_path(template: str) -> tuple[str, bool]:
    """The ACL path to grant for a checked path, and whether the grant must propagate.

    ``/vms/{vmid}`` -> ``("/vms", True)``; ``/sdn/zones/{zone}/{bridge}`` -> ``("/sdn/zones", True)``;
    a literal path such as ``/`` or ``/access`` is granted on itself: ``("/", False)``.
    """
    parts = [part for part in template.split("/") if part]
    for index, part in enumerate(parts):
        if "{" in part:
            return "/" + "/".join(parts[:index]), True
    return "/" + "/".join(parts), False


PATH_ORDER = ("/vms", "/storage", "/nodes", "/sdn/zones", "/")


@dataclass(frozen=True)
class PathGrant:
    """What must be granted on one ACL path: privileges (sorted), each with the features needing it."""

    path: str
    propagate: bool
    privileges: tuple[str, ...]
    used_for: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def by_acl_path(needs: Mapping[Need, tuple[str, ...]]) -> tuple[PathGrant, ...]:
    """Fold resolved needs onto ACL paths (:data:`PATH_ORDER` first, then alphabetical)."""
    grouped: dict[str, dict[str, list[str]]] = {}
    propagate: dict[str, bool] = {}
    for (template, priv), features in needs.items():
        path, below = acl_path(template)
        propagate[path] = propagate.get(path, False) or below
        served = grouped.setdefault(path, {}).setdefault(priv, [])
        served.extend(f for f in features if f not in served)
    order = {path: index for index, path in enumerate(PATH_ORDER)}
    paths = sorted(grouped, key=lambda p: (order.get(p, len(order)), p))
    return tuple(
        PathGrant(
            path,
            propagate[path],
            tuple(sorted(grouped[path])),
            {priv: tuple(grouped[path][priv]) for priv in sorted(grouped[path])},
        )
        for path in paths
    )


@cache
def required_grants() -> tuple[PathGrant, ...]:
    """What autovibe needs, per ACL path, derived from :data:`USED_ENDPOINTS`."""
    return by_acl_path(resolve(requirements()))


def required_privileges(grants: Sequence[PathGrant] | None = None) -> tuple[RequiredPrivilege, ...]:
    """The grants flattened for the doctor: one entry per (path, privilege)."""
    return tuple(
        RequiredPrivilege(priv, grant.path, ", ".join(grant.used_for.get(priv, ())), grant.propagate)
        for grant in (required_grants() if grants is None else grants)
        for priv in grant.privileges
    )


# ---- the role, user, token and ACLs to set up --------------------------------------------------

DEFAULT_ROLE = "AutovibeHub"
DEFAULT_USER = "autovibe@pve"
DEFAULT_TOKEN = "autovibe"


@dataclass(frozen=True)
class RoleSpec:
    roleid: str
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class AclSpec:
    path: str
    roleid: str
    propagate: bool


@dataclass(frozen=True)
class AccessPlan:
    """The least-privilege setup: custom roles, a user, its privilege-separated token, and the ACLs that
    grant the roles to both (a privsep token holds only what its own ACLs and its user's both grant)."""

    userid: str
    tokenid: str
    roles: tuple[RoleSpec, ...]
    acls: tuple[AclSpec, ...]
    grants: tuple[PathGrant, ...]

    @property
    def token_authid(self) -> str:
        return f"{self.userid}!{self.tokenid}"

    def pveum_commands(self) -> list[str]:
        """What an administrator runs on a PVE node to set it up by hand."""
        lines = [f'pveum role add {role.roleid} --privs "{",".join(role.privileges)}"' for role in self.roles]
        lines += [
            f'pveum user add {self.userid} --comment "{USER_COMMENT}"',
            f'pveum user token add {self.userid} {self.tokenid} --privsep 1 --comment "{TOKEN_COMMENT}"',
        ]
        for acl in self.acls:
            line = (
                f"pveum acl modify {acl.path} --users {self.userid} --tokens '{self.token_authid}' "
                f"--roles {acl.roleid}"
            )
            lines.append(line if acl.propagate else f"{line} --propagate 0")
        return lines


USER_COMMENT = "autovibe control plane (API token only)"
TOKEN_COMMENT = "autovibe"


def literal_role_name(role: str, path: str) -> str:
    """The role for a path granted without propagation: ``/`` -> ``<role>.Datacenter``."""
    parts = [part.capitalize() for part in path.split("/") if part]
    return f"{role}.{''.join(parts) or 'Datacenter'}"


def access_plan(
    role: str = DEFAULT_ROLE,
    userid: str = DEFAULT_USER,
    tokenid: str = DEFAULT_TOKEN,
    grants: Sequence[PathGrant] | None = None,
) -> AccessPlan:
    """Roles and ACLs for ``grants`` (default: :func:`required_grants`).

    Paths granted with propagation (``/vms``, ``/storage``, ``/nodes``, ``/sdn/zones``) share ``role``,
    holding what they need together: a VM privilege on ``/storage`` is never checked, so sharing widens
    nothing. A path granted on itself only (``/``) gets its own role: ``Sys.Modify`` for the cluster IP
    sets must not reach ``/nodes``, where it would allow changing the hosts.
    """
    grants = tuple(required_grants() if grants is None else grants)
    shared = sorted({priv for grant in grants if grant.propagate for priv in grant.privileges})
    roles = [RoleSpec(role, tuple(shared))] if shared else []
    acls: list[AclSpec] = []
    for grant in grants:
        if grant.propagate:
            acls.append(AclSpec(grant.path, role, True))
        else:
            own = literal_role_name(role, grant.path)
            roles.append(RoleSpec(own, grant.privileges))
            acls.append(AclSpec(grant.path, own, False))
    return AccessPlan(userid, tokenid, tuple(roles), tuple(acls), grants)


def admin_requirements(plan: AccessPlan, rules: Mapping[str, Rule] | None = None) -> list[Requirement]:
    """What the credentials running ``pve role --apply`` must pass, on concrete paths."""
    realm = plan.userid.rpartition("@")[2]
    found: list[Requirement] = []
    for acl in plan.acls:
        found += requirements(ADMIN_ENDPOINTS, rules, bindings={"path": acl.path, "realm": realm})
    return list(dict.fromkeys(found))


def unmet(found: Iterable[Requirement], held: Mapping[str, Iterable[str]]) -> list[Need]:
    """For each requirement no alternative of which ``held`` (concrete path -> privileges) passes, the
    needs of its first alternative that are missing; each listed once, in order."""
    have = {path: frozenset(privs) for path, privs in held.items()}
    missing: dict[Need, None] = {}
    for req in found:
        if any(all(priv in have.get(path, ()) for path, priv in alt) for alt in req.alternatives):
            continue
        first = sorted(req.alternatives[0]) if req.alternatives else []
        missing.update((need, None) for need in first if need[1] not in have.get(need[0], ()))
    return list(missing)


def concrete_paths(found: Iterable[Requirement]) -> list[str]:
    """Every path the requirements check, in first-seen order."""
    return list(dict.fromkeys(path for req in found for alt in req.alternatives for path, _ in sorted(alt)))
