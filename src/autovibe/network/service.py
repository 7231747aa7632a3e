"""Apply, check and refresh network profiles on PVE.

Apply order, chosen so that a machine is never less guarded than before mid-way: IP sets first (new
members added before stale ones are removed, so a set is never empty while a rule uses it), then
``net0`` (bridge, ``firewall=1``, VLAN tag), the VM's firewall options, and the rules (the wanted ones
inserted at the top, then autovibe's old ones deleted; the user's rules are never touched). A profile
that names a bridge the node lacks is refused before anything changes. Applying is idempotent: after
an interruption, applying again finishes the job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import MachineNotFound
from autovibe.network.firewall import (
    Desired,
    Difference,
    Live,
    desired,
    drift,
    net_fields,
    plan_rules,
    set_name,
)
from autovibe.network.profiles import PVE_HOSTS, NetworkProfile, NetworkProfileInvalid, get_profile
from autovibe.network.resolve import Resolver, resolve_all
from autovibe.pve import PveApiError
from autovibe.security.risk import Subject
from autovibe.store.tables import Machine


@dataclass(frozen=True)
class NetworkContext:
    """What applying profiles needs besides PVE: the profiles, a resolver, the symbolic hosts."""

    profiles: Mapping[str, NetworkProfile]
    resolver: Resolver
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)  # "hub" -> addresses (for @hub)


@dataclass(frozen=True)
class ApplyReport:
    machine: str
    vmid: int
    profile: str
    changes: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class CheckReport:
    machine: str
    vmid: int
    profile: str | None
    differences: tuple[Difference, ...]
    warnings: tuple[str, ...]


# ---- reading the cluster ---------------------------------------------------------------------------
async def node_addresses(deps: MachineDeps) -> list[str]:
    """The cluster nodes' management addresses (``/cluster/status``), for the host guard."""
    status: list[dict[str, Any]] = await deps.pve.get("/cluster/status")
    return sorted({str(e["ip"]) for e in status if e.get("type") == "node" and e.get("ip")})


async def bridges(deps: MachineDeps, node: str) -> set[str]:
    found: list[dict[str, Any]] = await deps.pve.get(f"/nodes/{node}/network", type="any_bridge")
    return {str(i["iface"]) for i in found}


async def firewall_warnings(deps: MachineDeps, node: str) -> list[str]:
    """PVE applies VM rules only when the datacenter and the node firewall are on."""
    warnings = []
    cluster = await deps.pve.get("/cluster/firewall/options")
    if not int(cluster.get("enable", 0) or 0):
        warnings.append(
            "the datacenter firewall is off (Datacenter > Firewall > Options), so PVE applies no VM rules: "
            "turn it on after allowing your own management access"
        )
    host = await deps.pve.get(f"/nodes/{node}/firewall/options")
    if not int(host.get("enable", 1) if host.get("enable") is not None else 1):
        warnings.append(f"the firewall of node {node} is off, so PVE applies no VM rules there")
    return warnings


async def _want(
    deps: MachineDeps, ctx: NetworkContext, profile: NetworkProfile
) -> tuple[Desired, list[str], frozenset[str]]:
    """What ``profile`` asks for now, notes for the user, and the IP sets whose host name did not resolve
    just now (they keep their members: a DNS hiccup must not empty a set a rule uses)."""
    hosts = [e.host for e in profile.entries if e.host]
    resolved, failed = await resolve_all(ctx.resolver, [h for h in hosts if h])
    symbols: dict[str, list[str]] = {f"@{k}": list(v) for k, v in ctx.hosts.items()}
    if profile.isolating or any(e.symbol == PVE_HOSTS for e in profile.entries):
        symbols[PVE_HOSTS] = await node_addresses(deps)
    want = desired(profile, resolved=resolved, symbols=symbols)
    notes = [f"could not resolve {host}: {why}" for host, why in failed.items()]
    empty = [n for n in want.notes if n.split(" ", 1)[0] not in failed]  # not said twice
    return want, [*notes, *empty], frozenset(set_name(host) for host in failed)


async def _read_live(deps: MachineDeps, node: str, vmid: int, sets: Sequence[str]) -> Live:
    path = f"/nodes/{node}/qemu/{vmid}"
    config = await deps.pve.get(f"{path}/config")
    options = await deps.pve.get(f"{path}/firewall/options")
    rules = sorted(await deps.pve.get(f"{path}/firewall/rules"), key=lambda r: int(r.get("pos", 0)))
    existing = {str(s["name"]) for s in await deps.pve.get("/cluster/firewall/ipset")}
    ipsets = {}
    for name in sets:
        if name in existing:
            entries = await deps.pve.get(f"/cluster/firewall/ipset/{name}")
            ipsets[name] = frozenset(str(e["cidr"]) for e in entries)
    return Live(str(config.get("net0", "")), options, rules, ipsets)


# ---- apply -----------------------------------------------------------------------------------------
async def _sync_ipsets(
    deps: MachineDeps, wanted: Mapping[str, frozenset[str]], *, keep_old: frozenset[str]
) -> list[str]:
    """Bring each wanted IP set to its members (one listing of the cluster's sets for all of them)."""
    existing = {str(s["name"]) for s in await deps.pve.get("/cluster/firewall/ipset")}
    changes: list[str] = []
    for name, members in sorted(wanted.items()):
        changes += await _sync_ipset(deps, name, members, exists=name in existing, keep_old=name in keep_old)
    return changes


async def _sync_ipset(
    deps: MachineDeps, name: str, members: frozenset[str], *, exists: bool, keep_old: bool
) -> list[str]:
    """Create the set if needed, add missing members, then (unless ``keep_old``) remove stale ones."""
    changes = []
    current: set[str] = set()
    if not exists:
        try:
            await deps.pve.post("/cluster/firewall/ipset", name=name, comment="managed by autovibe")
            changes.append(f"created IP set {name}")
        except PveApiError as exc:
            # The machines of a fleet apply the same profile at once: another one just made the set.
            if not _already_exists(exc):
                raise
            exists = True
    if exists:
        current = {str(e["cidr"]) for e in await deps.pve.get(f"/cluster/firewall/ipset/{name}")}
    for member in sorted(members - current):
        try:
            await deps.pve.post(f"/cluster/firewall/ipset/{name}", cidr=member)
        except PveApiError as exc:
            if not _already_exists(exc):
                raise
            continue  # added meanwhile by a concurrent apply of the same profile
        changes.append(f"{name}: added {member}")
    if not keep_old:
        for member in sorted(current - members):
            await deps.pve.delete(f"/cluster/firewall/ipset/{name}/{member}")
            changes.append(f"{name}: removed {member}")
    return changes


def _already_exists(exc: PveApiError) -> bool:
    return "already exists" in exc.message or any("already exists" in v for v in exc.errors.values())


def _with_net(net0: str, profile: NetworkProfile) -> str:
    parts = [p for p in net0.split(",") if p.split("=", 1)[0] not in ("bridge", "firewall", "tag")]
    parts += [f"bridge={profile.bridge}", "firewall=1"]
    if profile.vlan is not None:
        parts.append(f"tag={profile.vlan}")
    return ",".join(parts)


async def apply_to_vm(
    deps: MachineDeps, ctx: NetworkContext, *, node: str, vmid: int, profile: NetworkProfile
) -> tuple[list[str], list[str]]:
    """Bring one VM to ``profile`` (see the module docstring); returns (changes, warnings)."""
    if profile.bridge not in await bridges(deps, node):
        raise NetworkProfileInvalid(
            f"network profile '{profile.name}' uses bridge {profile.bridge}, which node {node} does not have",
            hint="create the bridge on the node (System > Network) or change the profile's bridge",
        )
    want, warnings, unresolved = await _want(deps, ctx, profile)
    changes = await _sync_ipsets(deps, want.ipsets, keep_old=unresolved)
    path = f"/nodes/{node}/qemu/{vmid}"
    config = await deps.pve.get(f"{path}/config")
    net0 = str(config.get("net0", ""))
    wanted_net = _with_net(net0, profile)
    if net_fields(net0) != net_fields(wanted_net):
        await deps.gate.retry_locked(
            lambda: deps.pve.put(f"{path}/config", net0=wanted_net), what=f"net0 of VM {vmid}"
        )
        changes.append(
            f"net0: bridge {profile.bridge}, firewall on" + (f", VLAN {profile.vlan}" if profile.vlan else "")
        )
    options = await deps.pve.get(f"{path}/firewall/options")
    if any(str(options.get(k)) != str(v) for k, v in want.options.items()):
        await deps.pve.put(f"{path}/firewall/options", **want.options)
        changes.append(
            f"VM firewall on, policy in {profile.policy_in} / out {profile.policy_out}, "
            f"DHCP {'on' if profile.dhcp else 'off'}"
        )
    rules = sorted(await deps.pve.get(f"{path}/firewall/rules"), key=lambda r: int(r.get("pos", 0)))
    plan = plan_rules(want.rules, rules)
    # PVE puts every new rule at the top (pve-firewall create_rule unshifts it), so the wanted rules go
    # in last first and end up in order, above everything else.
    for rule in reversed(plan.insert):
        await deps.pve.post(f"{path}/firewall/rules", **rule.params())
    for position in plan.delete_positions:
        await deps.pve.delete(f"{path}/firewall/rules/{position}")
    if plan.insert:
        changes.append(
            f"rules: wrote {len(plan.insert)} autovibe rules at the top, "
            f"removed {len(plan.delete_positions)} old ones"
        )
    return changes, [*warnings, *await firewall_warnings(deps, node)]


async def apply(
    deps: MachineDeps, ctx: NetworkContext, ref: str, profile_name: str, *, approval: str | None = None
) -> ApplyReport:
    """Apply a profile to a tracked machine and remember it as the machine's profile. Idempotent: running
    it again after an interruption finishes the job (nothing is undone, so nothing needs journaling)."""
    profile = get_profile(ctx.profiles, profile_name)
    target = await machines.show(deps, ref)
    if target.missing:
        raise MachineNotFound(
            f"machine '{target.name}' (VM {target.vmid}) no longer exists in PVE",
            hint=f"remove the record with `autovibe machine delete {target.name}`",
        )
    open_profile = not profile.isolating or profile.policy_out == "ACCEPT"
    async with deps.security.guard(
        deps.identity,
        "network.apply",
        target=f"machine {target.name}",
        project=target.project,
        subject=Subject(
            "network.apply", machines=[dict(target.labels)], details={"network_open": open_profile}
        ),
        params={"vmid": target.vmid, "profile": profile.name},
        approval=approval,
    ):
        changes, warnings = await apply_to_vm(deps, ctx, node=target.node, vmid=target.vmid, profile=profile)
    with deps.db.session() as session:
        row = session.scalars(select(Machine).where(Machine.vmid == target.vmid)).one()
        row.network_profile = profile.name
    return ApplyReport(target.name, target.vmid, profile.name, tuple(changes), tuple(warnings))


# ---- check and refresh -----------------------------------------------------------------------------
async def check(deps: MachineDeps, ctx: NetworkContext, ref: str) -> CheckReport:
    """Every difference between the machine's live network and firewall state and its profile."""
    target = await machines.show(deps, ref)
    with deps.db.session() as session:
        name = session.scalars(select(Machine.network_profile).where(Machine.vmid == target.vmid)).one()
    if name is None:
        return CheckReport(
            target.name, target.vmid, None, (), ("no network profile applied to this machine",)
        )
    if target.missing:
        raise MachineNotFound(f"machine '{target.name}' (VM {target.vmid}) no longer exists in PVE")
    profile = get_profile(ctx.profiles, name)
    want, notes, unresolved = await _want(deps, ctx, profile)
    live = await _read_live(deps, target.node, target.vmid, sorted(want.ipsets))
    # A set whose host name does not resolve right now is judged by nothing but its existence.
    judged = {k: live.ipsets.get(k, v) if k in unresolved else v for k, v in want.ipsets.items()}
    found = drift(replace(want, ipsets=judged), live)
    if not profile.isolating:
        notes.append(
            f"profile '{profile.name}' has no host guard (isolating = false): machines on it can reach the "
            "PVE nodes' API (8006) and SSH (22), link-local metadata and any DNS server"
        )
    bridges_here = await bridges(deps, target.node)
    if profile.bridge not in bridges_here:
        notes.append(f"node {target.node} has no bridge {profile.bridge}")
    return CheckReport(
        target.name,
        target.vmid,
        profile.name,
        tuple(found),
        (*notes, *await firewall_warnings(deps, target.node)),
    )


@dataclass(frozen=True)
class RefreshReport:
    changes: tuple[str, ...]
    failures: tuple[str, ...]


async def refresh(deps: MachineDeps, ctx: NetworkContext) -> RefreshReport:
    """Re-resolve the host names of every profile in use and update their IP sets (members added before
    stale ones go; a name that does not resolve now keeps its old members)."""
    with deps.db.session() as session:
        in_use = sorted({n for n in session.scalars(select(Machine.network_profile)) if n})
    failures: list[str] = []
    wanted: dict[str, frozenset[str]] = {}
    keep: set[str] = set()
    for name in in_use:
        if name not in ctx.profiles:
            failures.append(f"network profile '{name}' is in use but no longer configured")
            continue
        want, notes, unresolved = await _want(deps, ctx, ctx.profiles[name])
        failures += [n for n in notes if n.startswith("could not") and n not in failures]
        wanted |= want.ipsets
        keep |= unresolved
    with deps.security.guard_sync(deps.identity, "network.refresh", target="network IP sets"):
        changes = await _sync_ipsets(deps, wanted, keep_old=frozenset(keep))
    return RefreshReport(tuple(changes), tuple(failures))
