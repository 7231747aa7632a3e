"""Single-guest steps against the simulator, and the pure snapshot tree."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from autovibe.cluster import guests
from autovibe.cluster.models import GuestNotFound, GuestRef, SnapshotNode, SnapshotView
from autovibe.errors import AutovibeNotFound
from autovibe.pve import PveClient, PveTaskFailed, TaskStatus


def snap(name: str, parent: str | None = None, minute: int | None = None) -> SnapshotView:
    when = datetime(2025, 1, 1, 12, minute, tzinfo=UTC) if minute is not None else None
    return SnapshotView(name=name, parent=parent, snaptime=when)


def shape(nodes: list[SnapshotNode] | tuple[SnapshotNode, ...]) -> list[object]:
    return [(node.snapshot.name, shape(node.children)) for node in nodes]


# ---- snapshot_tree (pure) ---------------------------------------------------------------------------


def test_tree_follows_parents_and_keeps_sibling_order() -> None:
    items = [
        snap("a", None, 1),
        snap("b", "a", 2),
        snap("c", "a", 3),
        snap("d", "c", 4),
        snap("current", "d"),
    ]
    assert shape(guests.snapshot_tree(items)) == [
        ("a", [("b", []), ("c", [("d", [("current", [])])])]),
    ]


def test_missing_parent_makes_a_root_and_nothing_is_dropped() -> None:
    items = [snap("x", "deleted-long-ago"), snap("y", "y"), snap("p", "q"), snap("q", "p")]
    tree = guests.snapshot_tree(items)
    names = []

    def walk(nodes: list[SnapshotNode] | tuple[SnapshotNode, ...]) -> None:
        for node in nodes:
            names.append(node.snapshot.name)
            walk(node.children)

    walk(tree)
    assert sorted(names) == ["p", "q", "x", "y"]
    assert [node.snapshot.name for node in tree][:2] == ["x", "y"]


def test_empty_list_gives_empty_tree() -> None:
    assert guests.snapshot_tree([]) == []


# ---- against the simulator -----------------------------------------------------------------------------


async def test_find_guest_knows_templates_and_refuses_the_rest(pve: PveClient) -> None:
    template = await guests.find_guest(pve=pve, vmid=9000, template=True)
    assert template.template and template.node == "pve1"
    with pytest.raises(GuestNotFound, match="no guest 4242") as missing:
        await guests.find_guest(pve=pve, vmid=4242)
    assert isinstance(missing.value, AutovibeNotFound) and isinstance(missing.value, KeyError)
    with pytest.raises(GuestNotFound, match="not a regular guest"):
        await guests.find_guest(pve=pve, vmid=9000, template=False)


async def test_clone_configure_start_snapshot_rollback_stop_delete(pve: PveClient) -> None:
    seen: list[TaskStatus] = []
    template = await guests.find_guest(pve=pve, vmid=9000, template=True)
    vm = await guests.clone_template(pve=pve, template=template, name="unit-vm", progress=seen.append)
    assert seen and seen[-1].ok and not seen[-1].running
    assert (await guests.find_guest(pve=pve, vmid=vm.vmid, template=False)).name == "unit-vm"

    await guests.configure(pve=pve, guest=vm, cores=3, memory_mib=3072)
    config = await pve.get(f"/nodes/{vm.node}/qemu/{vm.vmid}/config")
    assert (int(config["cores"]), int(config["memory"])) == (3, 3072)

    await guests.start(pve=pve, guest=vm)
    assert await guests.guest_power_state(pve=pve, guest=vm) == "running"
    await guests.snapshot(pve=pve, guest=vm, name="warm", description="with RAM", vmstate=True)
    listed = await guests.list_snapshots(pve=pve, guest=vm)
    assert [(s.name, s.parent, s.vmstate) for s in listed] == [
        ("warm", None, True),
        ("current", "warm", False),
    ]
    assert listed[0].description == "with RAM" and listed[0].snaptime is not None

    await guests.stop(pve=pve, guest=vm)
    await guests.rollback(pve=pve, guest=vm, name="warm")
    # A RAM snapshot resumes the VM where it was (SEMANTICS: rollback with vmstate).
    assert await guests.guest_power_state(pve=pve, guest=vm) == "running"

    await guests.stop(pve=pve, guest=vm)
    await guests.delete(pve=pve, guest=vm)
    with pytest.raises(GuestNotFound):
        await guests.find_guest(pve=pve, vmid=vm.vmid)


async def test_a_failing_task_raises_with_pve_exit_status(pve: PveClient) -> None:
    template = await guests.find_guest(pve=pve, vmid=9000, template=True)
    vm = await guests.clone_template(pve=pve, template=template, name="twice")
    await guests.start(pve=pve, guest=vm)
    with pytest.raises(PveTaskFailed, match="already running"):
        await guests.start(pve=pve, guest=GuestRef(node=vm.node, vmid=vm.vmid))
