"""The simulated cluster: nodes, storages, volumes, guests, tasks, access and faults in one object.

Lookups raise the errors PVE raises, with its wording (shared/pve-api/SEMANTICS.md §1): a missing guest
is a 500 "Configuration file ... does not exist", an unknown node a 500 host-name lookup failure.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import asdict
from typing import Any

from autovibe.sim.access import AccessState
from autovibe.sim.errors import SimApiError, TaskError, runtime_error
from autovibe.sim.faults import FaultPlan
from autovibe.sim.firewall import FirewallState
from autovibe.sim.model import GIB, MIB, Guest, Node, Storage, Volume, format_size
from autovibe.sim.tasks import TaskEngine
from autovibe.sim.usage import PROFILES, check_profile, current_profile, profile_change

CLUSTER_NAME = "autovibe-sim"
PVE_VERSION = {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}
# /cluster/nextid's default range (datacenter.cfg next-id; SEMANTICS §7).
NEXTID_LOWER, NEXTID_UPPER = 100, 1_000_000


def default_storages() -> list[Storage]:
    """``shared`` is network storage every node sees (Ceph RBD here); the rest are per node."""
    return [
        Storage("local", "dir", False, ["iso", "vztmpl", "backup", "snippets"], 100 * GIB, 400 * MIB),
        Storage("local-lvm", "lvmthin", False, ["images", "rootdir"], 512 * GIB, 1500 * MIB),
        Storage("local-zfs", "zfspool", False, ["images", "rootdir"], 512 * GIB, 1200 * MIB, "latest"),
        Storage("shared", "rbd", True, ["images", "rootdir"], 4096 * GIB, 2000 * MIB),
    ]


# vmid, name, cores, memory MiB, disk GiB, GiB of that disk the installed OS occupies
SEED_TEMPLATES = (
    (9000, "claude-code-template", 2, 4096, 20, 4),
    (9001, "hub-template", 4, 8192, 50, 6),
)


class Cluster:
    def __init__(
        self,
        nodes: list[Node],
        storages: list[Storage],
        *,
        access: AccessState,
        faults: FaultPlan | None = None,
        tasks: TaskEngine | None = None,
        seed: int = 0,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.storages = {s.id: s for s in storages}
        self.guests: dict[int, Guest] = {}
        self.volumes: dict[str, Volume] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.firewall = FirewallState()
        self.access = access
        self.faults = faults or FaultPlan(requests=[], tasks=[])
        self.tasks = tasks or TaskEngine()
        self.rng = random.Random(seed)
        self.boot_time = self.tasks.time - 3 * 86400.0  # nodes have been up a while

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def default(cls, *, nodes: int = 3, now: float, seed: int = 0) -> Cluster:
        """Three nodes, the four storages and the seed templates 9000/9001, as DESIGN.md promises.

        Node ``pveN`` has the management address 192.168.100.(10+N) on ``vmbr0`` (see network.py).
        """
        node_list = [Node(f"pve{i}", f"192.168.100.{10 + i}") for i in range(1, nodes + 1)]
        cluster = cls(node_list, default_storages(), access=AccessState.new(), seed=seed)
        cluster.tasks.time = now
        cluster.boot_time = now - 3 * 86400.0
        for vmid, name, cores, memory, disk_gib, used_gib in SEED_TEMPLATES:
            cluster._seed_template(vmid, name, cores, memory, disk_gib, now)
            cluster.volumes[f"shared:base-{vmid}-disk-0"].used = used_gib * GIB
        return cluster

    def _seed_template(
        self, vmid: int, name: str, cores: int, memory: int, disk_gib: int, now: float
    ) -> None:
        vol = self.alloc_volume("shared", "pve1", vmid, disk_gib * GIB, base=True)
        self.guests[vmid] = Guest(
            vmid,
            "pve1",
            {
                "name": name,
                "cores": str(cores),
                "sockets": "1",
                "memory": str(memory),
                "ostype": "l26",
                "scsihw": "virtio-scsi-single",
                "scsi0": f"{vol.volid},size={format_size(vol.size)}",
                "net0": f"virtio={self.new_mac()},bridge=vmbr0,firewall=1",
                "boot": "order=scsi0",
                "agent": "1",
                "smbios1": f"uuid={self.new_uuid()}",
                "vmgenid": self.new_uuid(),
                "meta": f"creation-qemu=9.2.0,ctime={int(now)}",
                "tags": "autovibe;template",
                "template": "1",
            },
        )

    # ---- lookups ------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise runtime_error(
                f"hostname lookup '{name}' failed - failed to get address info for: {name}: "
                "Name or service not known"
            )
        return self.nodes[name]

    def guest(self, node: str, vmid: int) -> Guest:
        """The guest ``vmid`` if it lives on ``node``; PVE's 500 otherwise."""
        self.node(node)
        guest = self.guests.get(vmid)
        if guest is None or guest.node != node:
            raise runtime_error(f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return guest

    def storage(self, storage_id: str, node: str) -> Storage:
        storage = self.storages.get(storage_id)
        if storage is None:
            raise runtime_error(f"storage '{storage_id}' does not exist")
        self.node(node)
        return storage

    def location_bandwidth(self, location: str) -> float:
        return self.storages[location.split("@")[0]].bandwidth

    def used_bytes(self, storage: Storage, node: str) -> int:
        loc = storage.location(node)
        return sum(v.used for v in self.volumes.values() if self._location_of(v) == loc)

    def _location_of(self, volume: Volume) -> str:
        return self.storages[volume.storage].location(volume.node)

    def new_mac(self) -> str:
        # BC:24:11 is Proxmox's OUI, the default datacenter mac_prefix.
        return "BC:24:11:" + ":".join(f"{self.rng.randrange(256):02X}" for _ in range(3))

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_free_vmid(self) -> int:
        for vmid in range(NEXTID_LOWER, NEXTID_UPPER):
            if vmid not in self.guests:
                return vmid
        raise runtime_error(f"unable to get any free VMID in range [{NEXTID_LOWER}, {NEXTID_UPPER}]")

    # ---- volumes ------------------------------------------------------------------------------
    def alloc_volume(
        self,
        storage_id: str,
        node: str,
        vmid: int,
        size: int,
        *,
        used: int = 0,
        base: bool = False,
        linked_from: str | None = None,
        state_of: str | None = None,
    ) -> Volume:
        """Allocate a disk (or a snapshot's RAM state volume) the way the storage type names it.

        Storages are thin: ``size`` is the virtual size, ``used`` what is allocated (and counted).
        """
        storage = self.storages[storage_id]
        if "images" not in storage.content:
            raise TaskError(f"storage '{storage_id}' does not support vm images")
        if linked_from is None and self.used_bytes(storage, node) + used > storage.total:
            raise TaskError(f"not enough space on storage '{storage_id}' ({format_size(used)} requested)")
        name = self._volume_name(storage, vmid, base=base, linked_from=linked_from, state_of=state_of)
        fmt = "qcow2" if storage.type == "dir" and state_of is None else "raw"
        volume = Volume(
            f"{storage_id}:{name}", storage_id, node, vmid, size, fmt, base=linked_from, used=used
        )
        self.volumes[volume.volid] = volume
        return volume

    def _volume_name(
        self, storage: Storage, vmid: int, *, base: bool, linked_from: str | None, state_of: str | None
    ) -> str:
        if state_of is not None:
            name = f"vm-{vmid}-state-{state_of}"
            return f"{vmid}/{name}.raw" if storage.type == "dir" else name
        prefix = "base" if base else "vm"
        taken = {v.volid for v in self.volumes.values()}
        for index in range(1000):
            name = f"{prefix}-{vmid}-disk-{index}"
            if storage.type == "dir":
                name = f"{vmid}/{name}.qcow2"
            if linked_from is not None:
                name = f"{linked_from.split(':', 1)[1]}/{name}"
            if f"{storage.id}:{name}" not in taken:
                return name
        raise TaskError(f"unable to allocate an image name for VM {vmid} in storage '{storage.id}'")

    def free_volume(self, volid: str) -> None:
        self.volumes.pop(volid, None)

    def volume(self, volid: str) -> Volume:
        if volid not in self.volumes:
            raise SimApiError(500, f"no such volume '{volid}'")
        return self.volumes[volid]

    # ---- load profiles (usage.py) ------------------------------------------------------------
    def set_load(self, vmid: int, profile: str | None, now: float) -> None:
        """Assign load profile ``profile`` to guest ``vmid``; None drops the assignment (tag or auto).

        A running guest switches at simulated time ``now`` (its counters carry on from where they are);
        a stopped one starts with it. Pass the clock's time; ``SimApp.set_load`` does.
        """
        self.set_loads({vmid: profile}, now)

    def set_loads(self, assignments: dict[int, str | None], now: float) -> None:
        """Several assignments at once; all are checked before any is made (ValueError)."""
        for vmid, profile in assignments.items():
            if vmid not in self.guests:
                raise ValueError(f"no guest with vmid {vmid}")
            if profile is not None:
                check_profile(profile)
        for vmid, profile in assignments.items():
            guest = self.guests[vmid]
            with profile_change(guest, now):
                guest.load = profile

    def clear_loads(self, now: float) -> None:
        """Drop every assignment: guests follow their ``load-*`` tag, or ``auto``."""
        self.set_loads({vmid: None for vmid, g in self.guests.items() if g.load is not None}, now)

    def load_table(self) -> dict[str, Any]:
        """Assignments (``profiles``), the profile each non-template guest follows, and the choices."""
        guests = sorted(self.guests.values(), key=lambda g: g.vmid)
        return {
            "profiles": {str(g.vmid): g.load for g in guests if g.load is not None},
            "effective": {str(g.vmid): current_profile(g) for g in guests if not g.is_template},
            "available": list(PROFILES),
        }

    # ---- time and persistence -----------------------------------------------------------------
    def advance(self, now: float) -> None:
        self.tasks.advance(self, now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(n) for n in self.nodes.values()],
            "storages": [asdict(s) for s in self.storages.values()],
            "guests": [asdict(g) for g in self.guests.values()],
            "volumes": [asdict(v) for v in self.volumes.values()],
            "pools": self.pools,
            "firewall": self.firewall.to_dict(),
            "access": self.access.to_dict(),
            "faults": self.faults.to_dict(),
            "tasks": self.tasks.to_dict(),
            "rng": list(self.rng.getstate()[1]),
            "boot_time": self.boot_time,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cluster:
        cluster = cls(
            [Node(**n) for n in data["nodes"]],
            [Storage(**s) for s in data["storages"]],
            access=AccessState.from_dict(data["access"]),
            faults=FaultPlan.from_dict(data["faults"]),
            tasks=TaskEngine.from_dict(data["tasks"]),
        )
        cluster.guests = {g["vmid"]: Guest.from_dict(g) for g in data["guests"]}
        cluster.volumes = {v["volid"]: Volume.from_dict(v) for v in data["volumes"]}
        cluster.pools = data["pools"]
        cluster.firewall = FirewallState.from_dict(data.get("firewall"))  # absent in older state files
        cluster.boot_time = float(data["boot_time"])
        cluster.rng.setstate((3, tuple(data["rng"]), None))
        return cluster
