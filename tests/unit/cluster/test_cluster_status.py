"""The status view: pure sorting of /cluster/resources rows, then against the simulator."""

from __future__ import annotations

from autovibe.cluster.service import build_status, cluster_status
from autovibe.pve import PveClient

ROWS = [
    {
        "id": "qemu/101",
        "type": "qemu",
        "vmid": "101",
        "name": "b",
        "node": "pve2",
        "status": "running",
        "maxcpu": 2,
        "maxmem": "4294967296",
        "maxdisk": 1,
        "lock": "snapshot",
        "tags": "x;y",
    },
    {
        "id": "node/pve2",
        "type": "node",
        "node": "pve2",
        "status": "online",
        "cpu": "0.5",
        "maxcpu": 8,
        "mem": 1,
        "maxmem": 2,
        "uptime": 10,
    },
    {
        "id": "lxc/100",
        "type": "lxc",
        "vmid": 100,
        "name": "a",
        "node": "pve1",
        "status": "stopped",
        "template": 1,
    },
    {"id": "node/pve1", "type": "node", "node": "pve1", "status": "offline"},
    {
        "id": "storage/pve1/local",
        "type": "storage",
        "storage": "local",
        "node": "pve1",
        "status": "available",
        "plugintype": "dir",
        "content": "vztmpl,iso,backup",
        "disk": 5,
        "maxdisk": 10,
    },
    {"id": "pool/dev", "type": "pool", "pool": "dev"},
    {"id": "sdn/pve1/localnetwork", "type": "sdn", "node": "pve1", "sdn": "localnetwork"},
]


def test_rows_are_sorted_into_nodes_guests_and_storages() -> None:
    view = build_status("8.4.1", "8.4", ROWS)
    assert [node.name for node in view.nodes] == ["pve1", "pve2"]
    assert view.nodes[0].status == "offline" and view.nodes[0].maxcpu == 0
    assert view.nodes[1].cpu == 0.5
    assert [(guest.vmid, guest.type) for guest in view.guests] == [(100, "lxc"), (101, "qemu")]
    assert view.guests[1].maxmem == 4 * 1024**3
    assert view.guests[1].lock == "snapshot" and view.guests[1].tags == ("x", "y")
    assert view.guests[0].lock is None
    assert [guest.vmid for guest in view.templates] == [100]
    (storage,) = view.storages
    assert (storage.storage, storage.plugin, storage.content) == ("local", "dir", ("backup", "iso", "vztmpl"))


def test_json_dump_is_plain_data() -> None:
    dumped = build_status("8.4.1", "8.4", ROWS).model_dump(mode="json")
    assert dumped["guests"][1]["tags"] == ["x", "y"]
    assert set(dumped) == {"version", "release", "nodes", "guests", "storages"}


async def test_simulated_cluster_has_three_nodes_and_the_seed_templates(pve: PveClient) -> None:
    view = await cluster_status(pve=pve)
    assert view.version.startswith("8.")
    assert [node.name for node in view.nodes] == ["pve1", "pve2", "pve3"]
    assert all(node.status == "online" and node.maxmem > 0 for node in view.nodes)
    assert [guest.vmid for guest in view.templates] == [9000, 9001]
    assert {storage.node for storage in view.storages} == {"pve1", "pve2", "pve3"}
