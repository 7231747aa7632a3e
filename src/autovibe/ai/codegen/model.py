"""The input both generators share: a project's machines with their sizes and rendered firewall (pure).

A :class:`Deployment` comes from a project's inventory rows (:func:`from_inventory`) or from a plan's
``machine.create`` actions (:func:`from_plan`). Host names in a network profile are not resolved here:
pass ``resolved``/``symbols`` to fill the IP sets, otherwise they are generated empty (autovibe's
``network apply`` refreshes them later).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autovibe.ai.plan import MachineCreate, Plan
from autovibe.machines.models import MachineRead, expand_names
from autovibe.machines.profiles import Profile, get_profile
from autovibe.network.firewall import Desired, desired
from autovibe.network.profiles import NetworkProfile
from autovibe.network.profiles import get_profile as get_network_profile

__all__ = ["DEFAULT_NODE", "Deployment", "MachineDef", "from_inventory", "from_plan"]

DEFAULT_NODE = "pve1"


@dataclass(frozen=True)
class MachineDef:
    """One machine to declare. ``vmid`` ``None``: PVE (or the provider) picks the next free id."""

    name: str
    node: str
    template_vmid: int
    cores: int
    memory_mib: int
    disk_gib: int
    network_profile: str
    firewall: Desired
    vmid: int | None = None
    full_clone: bool = True
    storage: str | None = None
    start: bool = True
    tags: tuple[str, ...] = ()

    @property
    def bridge(self) -> str:
        return self.firewall.bridge

    @property
    def vlan(self) -> int | None:
        return self.firewall.vlan


@dataclass(frozen=True)
class Deployment:
    project: str
    machines: tuple[MachineDef, ...]

    @property
    def ipsets(self) -> dict[str, frozenset[str]]:
        """Every cluster IP set the machines' rules name, members merged."""
        found: dict[str, frozenset[str]] = {}
        for machine in self.machines:
            for name, members in machine.firewall.ipsets.items():
                found[name] = found.get(name, frozenset()) | members
        return dict(sorted(found.items()))


def _render(
    name: str,
    network_profiles: Mapping[str, NetworkProfile],
    resolved: Mapping[str, Sequence[str]] | None,
    symbols: Mapping[str, Sequence[str]] | None,
) -> Desired:
    profile = get_network_profile(network_profiles, name)
    return desired(profile, resolved=resolved or {}, symbols=symbols or {})


def _tags(project: str, profile: Profile) -> tuple[str, ...]:
    return ("autovibe", f"project-{project}", *profile.tags)


def from_plan(
    plan: Plan,
    profiles: Mapping[str, Profile],
    network_profiles: Mapping[str, NetworkProfile],
    *,
    project: str | None = None,
    resolved: Mapping[str, Sequence[str]] | None = None,
    symbols: Mapping[str, Sequence[str]] | None = None,
    default_node: str = DEFAULT_NODE,
) -> Deployment:
    """The machines ``plan``'s ``machine.create`` actions ask for (only ``project``'s when given; else the
    project of the plan's first codegen or machine.create action). Profiles fill what an action leaves
    out; an action's ``network_profile`` overrides its profile's. A nameless action is named
    ``<project>-<profile>``.
    """
    creates = [a for a in plan.actions if isinstance(a, MachineCreate)]
    if project is None:
        codegen = [a.project for a in plan.actions if a.kind in ("codegen.terraform", "codegen.ansible")]
        projects = codegen or [a.project for a in creates]
        if not projects:
            raise ValueError("the plan names no project and creates no machine")
        project = str(projects[0])
    machines: list[MachineDef] = []
    for action in creates:
        if action.project != project:
            continue
        profile = get_profile(profiles, action.profile)
        net_name = action.network_profile or profile.network_profile
        rendered = _render(net_name, network_profiles, resolved, symbols)
        base = action.name or f"{project}-{profile.name}".replace("_", "-")
        for name in expand_names(base, action.count):
            machines.append(
                MachineDef(
                    name=name,
                    node=action.node or default_node,
                    template_vmid=profile.template_vmid,
                    cores=action.cores or profile.cores,
                    memory_mib=action.memory_mib or profile.memory_mib,
                    disk_gib=max(action.disk_gib or profile.disk_gib, profile.disk_gib),
                    network_profile=net_name,
                    firewall=rendered,
                    full_clone=profile.full_clone,
                    storage=profile.storage,
                    start=action.start,
                    tags=_tags(project, profile),
                )
            )
    return Deployment(project, tuple(machines))


def from_inventory(
    project: str,
    rows: Iterable[MachineRead],
    profiles: Mapping[str, Profile],
    network_profiles: Mapping[str, NetworkProfile],
    *,
    resolved: Mapping[str, Sequence[str]] | None = None,
    symbols: Mapping[str, Sequence[str]] | None = None,
) -> Deployment:
    """``project``'s machines as they are in the inventory (vmid and node kept), sized by their profile."""
    machines: list[MachineDef] = []
    for row in sorted(rows, key=lambda r: r.name):
        if row.project != project:
            continue
        profile = get_profile(profiles, row.profile)
        machines.append(
            MachineDef(
                name=row.name,
                vmid=row.vmid,
                node=row.node,
                template_vmid=profile.template_vmid,
                cores=profile.cores,
                memory_mib=profile.memory_mib,
                disk_gib=profile.disk_gib,
                network_profile=profile.network_profile,
                firewall=_render(profile.network_profile, network_profiles, resolved, symbols),
                full_clone=profile.full_clone,
                storage=profile.storage,
                start=row.status == "running",
                tags=_tags(project, profile),
            )
        )
    return Deployment(project, tuple(machines))
