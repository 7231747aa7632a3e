"""Which node a new machine goes to. Pure: plain values in, a node name (or a typed refusal) out.

The caller reads ``/cluster/resources`` once, turns it into :class:`NodeLoad` rows with
:func:`node_loads`, and passes the memory of machines that are still being created as ``reserved``
bytes per node: PVE's ``mem`` counts only running guests, so without reservations every machine
of a fleet would see the same free memory and pile onto one node.

Rule (:func:`choose_node`): a requested node must exist, be online and have room; otherwise pick the
online node with the most free memory after reservations, ties broken by the lowest CPU load, then
by name, so the answer is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from autovibe.machines.errors import (
    InsufficientCapacity,
    InvalidMachineRequest,
    NodeNotFound,
    NodeUnavailable,
)
from autovibe.pve.models import ClusterResource
from autovibe.types import GIB, MIB

__all__ = ["Demand", "NodeLoad", "choose_node", "node_loads", "plan_fleet"]

NO_RESERVATIONS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One node as placement sees it. Memory in bytes; ``cpu`` is the load as a fraction of ``maxcpu``."""

    name: str
    online: bool
    maxmem: int
    mem: int
    maxcpu: int
    cpu: float

    @property
    def free_memory(self) -> int:
        """Bytes not used by running guests and the host; negative when PVE reports overcommit."""
        return self.maxmem - self.mem


@dataclass(frozen=True, slots=True)
class Demand:
    """What one machine needs from a node: ``memory`` in bytes and ``cores`` (vCPUs)."""

    memory: int
    cores: int = 1

    def __post_init__(self) -> None:
        if self.memory <= 0 or self.cores <= 0:
            raise ValueError(f"a demand needs positive memory and cores, not {self.memory} B / {self.cores}")


def node_loads(resources: Sequence[ClusterResource]) -> list[NodeLoad]:
    """The ``type == "node"`` rows of one ``/cluster/resources`` read as :class:`NodeLoad`, by name.

    An offline node keeps its row (PVE lists it with ``status: offline`` and zero counters) so a
    request for it can be refused as unavailable rather than unknown.
    """
    loads = [
        NodeLoad(
            name=row.node or row.id.removeprefix("node/"),
            online=row.status == "online",
            maxmem=row.maxmem,
            mem=row.mem,
            maxcpu=int(row.maxcpu),
            cpu=row.cpu,
        )
        for row in resources
        if row.type == "node"
    ]
    return sorted(loads, key=lambda load: load.name)


def choose_node(
    nodes: Sequence[NodeLoad],
    demand: Demand,
    *,
    requested: str | None = None,
    reserved: Mapping[str, int] = NO_RESERVATIONS,
) -> str:
    """The node for one machine needing ``demand``, given ``reserved`` bytes already promised per node.

    Raises :class:`NodeNotFound` (requested node unknown), :class:`NodeUnavailable` (requested node
    not online) or :class:`InsufficientCapacity` (no eligible node has ``demand.memory`` free, or
    none has ``demand.cores`` CPUs); the message says how much is free where.
    """
    if requested is not None:
        return _check_requested(nodes, demand, requested, reserved)
    fitting = [node for node in nodes if _fits(node, demand, reserved)]
    if not fitting:
        raise InsufficientCapacity(
            f"no node has room for a machine with {_size(demand.memory)} and {_cores(demand.cores)}: "
            f"{_capacity(nodes, demand, reserved)}"
        )
    best = min(fitting, key=lambda node: (-_free(node, reserved), node.cpu, node.name))
    return best.name


def plan_fleet(
    nodes: Sequence[NodeLoad],
    demand: Demand,
    count: int,
    *,
    requested: str | None = None,
    reserved: Mapping[str, int] = NO_RESERVATIONS,
) -> list[str]:
    """A node for each of ``count`` machines, reserving each one's memory before placing the next.

    All or nothing: if the fleet does not fit, :class:`InsufficientCapacity` says how many would,
    and nothing is returned. Equal nodes receive counts that differ by at most one (20 machines on
    three equal nodes: 7/7/6), because every choice goes to the node with the most memory left.
    """
    if count < 1:
        raise InvalidMachineRequest(f"count: must be at least 1, not {count}")
    promised = dict(reserved)
    plan: list[str] = []
    for placed in range(count):
        try:
            node = choose_node(nodes, demand, requested=requested, reserved=promised)
        except InsufficientCapacity:
            if placed == 0:
                raise
            raise InsufficientCapacity(
                f"only {placed} of {count} machines with {_size(demand.memory)} each fit; "
                f"free before the fleet: {_capacity(nodes, demand, reserved)}"
            ) from None
        promised[node] = promised.get(node, 0) + demand.memory
        plan.append(node)
    return plan


def _check_requested(
    nodes: Sequence[NodeLoad], demand: Demand, requested: str, reserved: Mapping[str, int]
) -> str:
    node = next((node for node in nodes if node.name == requested), None)
    if node is None:
        known = ", ".join(sorted(n.name for n in nodes)) or "none"
        raise NodeNotFound(
            f"node {requested!r} is not in the cluster",
            hint=f"known nodes: {known}; or leave the node out to let autovibe choose",
        )
    if not node.online:
        raise NodeUnavailable(f"node {requested!r} is not online")
    if not _fits(node, demand, reserved):
        raise InsufficientCapacity(
            f"node {requested!r} has no room for a machine with {_size(demand.memory)} and "
            f"{_cores(demand.cores)}: {_describe(node, demand, reserved)}",
            hint="leave the node out to let autovibe choose one with room, or ask for less",
        )
    return node.name


def _free(node: NodeLoad, reserved: Mapping[str, int]) -> int:
    return node.free_memory - reserved.get(node.name, 0)


def _fits(node: NodeLoad, demand: Demand, reserved: Mapping[str, int]) -> bool:
    # qemu-server refuses to start a VM with more vCPUs than the host has ("MAX n vcpus allowed per
    # VM on this node"), so such a node is no place for it whatever its memory.
    return node.online and node.maxcpu >= demand.cores and _free(node, reserved) >= demand.memory


def _describe(node: NodeLoad, demand: Demand, reserved: Mapping[str, int]) -> str:
    if not node.online:
        return f"{node.name} offline"
    if node.maxcpu < demand.cores:
        return f"{node.name} has only {node.maxcpu} CPUs"
    return f"{node.name} {_size(max(_free(node, reserved), 0))} free"


def _capacity(nodes: Sequence[NodeLoad], demand: Demand, reserved: Mapping[str, int]) -> str:
    if not nodes:
        return "the cluster reports no nodes"
    return ", ".join(_describe(node, demand, reserved) for node in sorted(nodes, key=lambda n: n.name))


def _size(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size // MIB} MiB"


def _cores(cores: int) -> str:
    return f"{cores} core{'s' if cores != 1 else ''}"
