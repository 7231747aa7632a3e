"""``/cluster/firewall``, ``/nodes/{node}/firewall`` and ``/nodes/{node}/qemu/{vmid}/firewall``.

Options, rules (positions, ``moveto``), IP sets, aliases, references, macros and security groups, with
pve-firewall's checks and texts (``firewall.py`` holds the logic). Everything is synchronous and
answers ``null`` on writes. Like PVE, which keys a guest's ``<vmid>.fw`` by VMID alone, the guest
endpoints do not check that the guest exists; destroying a guest removes its firewall file and a clone
gets a copy of its source's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autovibe.sim import firewall as fw
from autovibe.sim.registry import Call, Handler, route

CLUSTER = "/cluster/firewall"
HOST = "/nodes/{node}/firewall"
GUEST = "/nodes/{node}/qemu/{vmid}/firewall"

Locate = Callable[[Call], fw.FwConf]
ScopeOf = Callable[[Call], fw.Scope]


def _cluster(call: Call) -> fw.FwConf:
    return call.cluster.firewall.cluster


def _host(call: Call) -> fw.FwConf:
    return call.cluster.firewall.host(call.params["node"])


def _guest(call: Call) -> fw.FwConf:
    return call.cluster.firewall.guest(int(call.params["vmid"]))


def _cluster_scope(call: Call) -> fw.Scope:
    return fw.Scope("cluster", None, _cluster(call))


def _host_scope(call: Call) -> fw.Scope:
    return fw.Scope("host", _cluster(call), _host(call))


def _guest_scope(call: Call) -> fw.Scope:
    return fw.Scope("vm", _cluster(call), _guest(call))


def _group_scope(call: Call) -> fw.Scope:
    return fw.Scope("group", None, _cluster(call))


def _register(method: str, path: str, handler: Handler) -> None:
    route(method, path)(handler)


# ---- indexes -------------------------------------------------------------------------------------------
@route("GET", CLUSTER)
def cluster_index(call: Call) -> list[dict[str, str]]:
    names = ("aliases", "rules", "options", "groups", "ipset", "macros", "refs")
    return [{"name": name} for name in names]


@route("GET", HOST)
def host_index(call: Call) -> list[dict[str, str]]:
    return [{"name": name} for name in ("rules", "options", "log")]


@route("GET", GUEST)
def guest_index(call: Call) -> list[dict[str, str]]:
    return [{"name": name} for name in ("rules", "aliases", "ipset", "refs", "options")]


@route("GET", f"{CLUSTER}/macros")
def macros(call: Call) -> list[dict[str, str]]:
    return fw.macro_list()


# ---- options -------------------------------------------------------------------------------------------
def _options(prefix: str, locate: Locate, names: tuple[str, ...]) -> None:
    def get(call: Call) -> dict[str, Any]:
        return fw.get_options(locate(call))

    def put(call: Call) -> None:
        fw.set_options(locate(call), names, call.params, now=call.now)

    _register("GET", f"{prefix}/options", get)
    _register("PUT", f"{prefix}/options", put)


_options(CLUSTER, _cluster, fw.CLUSTER_OPTIONS)
_options(HOST, _host, fw.HOST_OPTIONS)
_options(GUEST, _guest, fw.VM_OPTIONS)


# ---- rules ---------------------------------------------------------------------------------------------
RulesOf = Callable[[Call], list[dict[str, Any]]]


def _rules(base: str, rules_of: RulesOf, scope_of: ScopeOf) -> None:
    """The five rule endpoints on ``base`` (``.../rules``, or a security group's own path)."""

    def listing(call: Call) -> list[dict[str, Any]]:
        return fw.rules_with_positions(rules_of(call), scope_of(call))

    def create(call: Call) -> None:
        fw.create_rule(rules_of(call), scope_of(call), call.params)

    def read(call: Call) -> dict[str, Any]:
        rules = rules_of(call)
        pos = int(call.params["pos"])
        fw.rule_at(rules, pos)
        return fw.rules_with_positions(rules, scope_of(call))[pos]

    def update(call: Call) -> None:
        fw.update_rule(rules_of(call), scope_of(call), call.params)

    def delete(call: Call) -> None:
        fw.delete_rule(rules_of(call), scope_of(call), call.params)

    _register("GET", base, listing)
    _register("POST", base, create)
    _register("GET", f"{base}/{{pos}}", read)
    _register("PUT", f"{base}/{{pos}}", update)
    _register("DELETE", f"{base}/{{pos}}", delete)


_rules(f"{CLUSTER}/rules", lambda call: _cluster(call).rules, _cluster_scope)
_rules(f"{HOST}/rules", lambda call: _host(call).rules, _host_scope)
_rules(f"{GUEST}/rules", lambda call: _guest(call).rules, _guest_scope)
_rules(
    f"{CLUSTER}/groups/{{group}}",
    lambda call: fw.group_rules(_cluster(call), call.params["group"]),
    _group_scope,
)


# ---- IP sets -------------------------------------------------------------------------------------------
def _ipsets(prefix: str, locate: Locate, scope_of: ScopeOf) -> None:
    base = f"{prefix}/ipset"

    def listing(call: Call) -> list[dict[str, Any]]:
        return fw.with_digest(fw.ipset_list(locate(call)))

    def create(call: Call) -> None:
        fw.create_ipset(locate(call), call.params)

    def entries(call: Call) -> list[dict[str, Any]]:
        return fw.with_digest(fw.ipset_entries(locate(call), call.params["name"]))

    def add(call: Call) -> None:
        fw.add_ipset_entry(locate(call), scope_of(call), call.params["name"], call.params)

    def delete_set(call: Call) -> None:
        fw.delete_ipset(locate(call), call.params["name"], force=bool(call.params.get("force")))

    def read(call: Call) -> dict[str, Any]:
        return fw.ipset_entry(locate(call), call.params["name"], call.params["cidr"])

    def update(call: Call) -> None:
        fw.update_ipset_entry(locate(call), call.params["name"], call.params)

    def remove(call: Call) -> None:
        fw.remove_ipset_entry(locate(call), call.params["name"], call.params)

    _register("GET", base, listing)
    _register("POST", base, create)
    _register("GET", f"{base}/{{name}}", entries)
    _register("POST", f"{base}/{{name}}", add)
    _register("DELETE", f"{base}/{{name}}", delete_set)
    _register("GET", f"{base}/{{name}}/{{cidr}}", read)
    _register("PUT", f"{base}/{{name}}/{{cidr}}", update)
    _register("DELETE", f"{base}/{{name}}/{{cidr}}", remove)


_ipsets(CLUSTER, _cluster, _cluster_scope)
_ipsets(GUEST, _guest, _guest_scope)


# ---- aliases -------------------------------------------------------------------------------------------
def _aliases(prefix: str, locate: Locate) -> None:
    base = f"{prefix}/aliases"

    def listing(call: Call) -> list[dict[str, Any]]:
        return fw.with_digest(fw.alias_list(locate(call)))

    def create(call: Call) -> None:
        fw.create_alias(locate(call), call.params)

    def read(call: Call) -> dict[str, Any]:
        return fw.read_alias(locate(call), call.params["name"])

    def update(call: Call) -> None:
        fw.update_alias(locate(call), call.params)

    def delete(call: Call) -> None:
        fw.delete_alias(locate(call), call.params)

    _register("GET", base, listing)
    _register("POST", base, create)
    _register("GET", f"{base}/{{name}}", read)
    _register("PUT", f"{base}/{{name}}", update)
    _register("DELETE", f"{base}/{{name}}", delete)


_aliases(CLUSTER, _cluster)
_aliases(GUEST, _guest)


# ---- references ----------------------------------------------------------------------------------------
@route("GET", f"{CLUSTER}/refs")
def cluster_refs(call: Call) -> list[dict[str, Any]]:
    return fw.references(_cluster(call), call.params.get("type"), "dc")


@route("GET", f"{GUEST}/refs")
def guest_refs(call: Call) -> list[dict[str, Any]]:
    kind = call.params.get("type")
    return fw.references(_cluster(call), kind, "dc") + fw.references(_guest(call), kind, "guest")


# ---- security groups -----------------------------------------------------------------------------------
@route("GET", f"{CLUSTER}/groups")
def groups(call: Call) -> list[dict[str, Any]]:
    return fw.with_digest(fw.group_list(_cluster(call)))


@route("POST", f"{CLUSTER}/groups")
def create_group(call: Call) -> None:
    fw.create_group(call.cluster.firewall, call.params)


@route("DELETE", f"{CLUSTER}/groups/{{group}}")
def delete_group(call: Call) -> None:
    fw.delete_group(_cluster(call), call.params["group"])
