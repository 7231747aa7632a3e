"""Properties of placement that no table of cases can cover: for any cluster, a fleet never takes
more memory than a node has free, fails exactly when it cannot fit, and spreads evenly."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovibe.machines.errors import InsufficientCapacity
from autovibe.machines.placement import Demand, NodeLoad, choose_node, node_loads, plan_fleet
from autovibe.pve.models import ClusterResource
from autovibe.types import GIB, MIB

names = st.lists(st.from_regex(r"pve[0-9]{1,2}", fullmatch=True), min_size=1, max_size=6, unique=True)


@st.composite
def clusters(draw: st.DrawFn) -> list[NodeLoad]:
    nodes = []
    for name in draw(names):
        maxmem = draw(st.integers(0, 64)) * GIB + draw(st.integers(0, 1023)) * MIB
        nodes.append(
            NodeLoad(
                name=name,
                online=draw(st.booleans()),
                maxmem=maxmem,
                # Up to 10% over maxmem: PVE reports overcommit when KSM/ballooning lag.
                mem=draw(st.integers(0, maxmem + maxmem // 10)),
                maxcpu=draw(st.sampled_from([2, 4, 8, 16])),
                cpu=draw(st.floats(0, 1)),
            )
        )
    return nodes


demands = st.builds(
    Demand, memory=st.integers(64, 16 * 1024).map(lambda mib: mib * MIB), cores=st.integers(1, 8)
)


def _reserved(nodes: list[NodeLoad]) -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries({}, optional={node.name: st.integers(0, 8 * GIB) for node in nodes})


def _room(node: NodeLoad, demand: Demand, reserved: dict[str, int]) -> int:
    """How many machines of ``demand`` fit on ``node``, counted independently of the code under test."""
    if not node.online or node.maxcpu < demand.cores:
        return 0
    return max(node.maxmem - node.mem - reserved.get(node.name, 0), 0) // demand.memory


@given(data=st.data(), nodes=clusters(), demand=demands, count=st.integers(1, 60))
def test_a_fleet_never_exceeds_free_memory_and_fails_only_when_it_cannot_fit(
    data: st.DataObject, nodes: list[NodeLoad], demand: Demand, count: int
) -> None:
    reserved = data.draw(_reserved(nodes))
    capacity = sum(_room(node, demand, reserved) for node in nodes)
    try:
        plan = plan_fleet(nodes, demand, count, reserved=reserved)
    except InsufficientCapacity:
        assert count > capacity
        return
    assert len(plan) == count <= capacity
    for node_name, placed in Counter(plan).items():
        node = next(node for node in nodes if node.name == node_name)
        assert placed <= _room(node, demand, reserved)


@given(
    count=st.integers(1, 200),
    node_count=st.integers(1, 8),
    loads=st.lists(st.floats(0, 1), min_size=8, max_size=8),
    used_gib=st.integers(0, 32),
)
def test_a_fleet_on_equal_nodes_spreads_within_one(
    count: int, node_count: int, loads: list[float], used_gib: int
) -> None:
    # Equal memory; CPU loads differ, which may only break ties, never unbalance the spread.
    nodes = [
        NodeLoad(name=f"pve{i}", online=True, maxmem=512 * GIB, mem=used_gib * GIB, maxcpu=32, cpu=loads[i])
        for i in range(node_count)
    ]
    plan = plan_fleet(nodes, Demand(memory=2 * GIB, cores=2), count)
    per_node = [Counter(plan)[node.name] for node in nodes]
    assert max(per_node) - min(per_node) <= 1


@given(data=st.data(), nodes=clusters(), demand=demands)
def test_the_chosen_node_fits_and_none_has_more_room(
    data: st.DataObject, nodes: list[NodeLoad], demand: Demand
) -> None:
    reserved = data.draw(_reserved(nodes))
    fitting = {node.name: node for node in nodes if _room(node, demand, reserved) > 0}
    if not fitting:
        with pytest.raises(InsufficientCapacity):
            choose_node(nodes, demand, reserved=reserved)
        return
    chosen = fitting[choose_node(nodes, demand, reserved=reserved)]
    free = {name: node.maxmem - node.mem - reserved.get(name, 0) for name, node in fitting.items()}
    assert free[chosen.name] == max(free.values())
    # The answer does not depend on the order PVE lists the nodes in.
    assert choose_node(list(reversed(nodes)), demand, reserved=reserved) == chosen.name


def test_node_loads_keeps_only_node_rows_sorted_by_name() -> None:
    rows = [
        ClusterResource(id="node/pve2", type="node", node="pve2", status="online", maxmem=8 * GIB, maxcpu=4),
        ClusterResource(id="qemu/100", type="qemu", node="pve1", vmid=100, maxmem=4 * GIB),
        ClusterResource(id="node/pve1", type="node", node="pve1", status="offline"),
    ]
    assert node_loads(rows) == [
        NodeLoad(name="pve1", online=False, maxmem=0, mem=0, maxcpu=0, cpu=0.0),
        NodeLoad(name="pve2", online=True, maxmem=8 * GIB, mem=0, maxcpu=4, cpu=0.0),
    ]


@pytest.mark.parametrize(("memory", "cores"), [(0, 1), (-1, 1), (MIB, 0)])
def test_a_demand_must_be_positive(memory: int, cores: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        Demand(memory=memory, cores=cores)


def test_a_fleet_needs_at_least_one_machine() -> None:
    node = NodeLoad(name="pve1", online=True, maxmem=GIB, mem=0, maxcpu=1, cpu=0.0)
    with pytest.raises(ValueError, match="count"):
        plan_fleet([node], Demand(memory=MIB), 0)
