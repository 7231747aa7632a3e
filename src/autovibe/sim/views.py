"""How cluster state looks in API answers: resource rows, node status, task entries."""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.model import Guest, Node, Storage
from autovibe.sim.tasks import Task
from autovibe.sim.usage import guest_usage

NODE_BASE_MEMORY = 3 * 1024**3  # what the host itself uses before any guest runs
NODE_ROOTFS = 100 * 1024**3


def guest_maxdisk(cluster: Cluster, guest: Guest) -> int:
    """PVE reports the size of the boot disk; we take the first disk, as ``boot: order=`` usually does."""
    disks = guest.disks()
    if not disks:
        return 0
    first = sorted(disks)[0]
    volume = cluster.volumes.get(disks[first])
    return volume.size if volume else 0


def guest_row(cluster: Cluster, guest: Guest, now: float) -> dict[str, Any]:
    usage = guest_usage(guest, now)
    row: dict[str, Any] = {
        "id": f"qemu/{guest.vmid}",
        "type": "qemu",
        "node": guest.node,
        "vmid": guest.vmid,
        "name": guest.name,
        "status": guest.status,
        "maxcpu": guest.cores,
        "maxmem": guest.memory,
        # PVE quirk kept on purpose: /cluster/resources reports disk 0 for VMs (it cannot see inside).
        "disk": 0,
        "maxdisk": guest_maxdisk(cluster, guest),
        "template": 1 if guest.is_template else 0,
        **usage,
    }
    for key in ("tags", "lock"):
        if key in guest.config:
            row[key] = guest.config[key]
    pool = next((p for p, info in cluster.pools.items() if guest.vmid in info.get("vms", [])), None)
    if pool:
        row["pool"] = pool
    return row


def node_usage(cluster: Cluster, node: Node, now: float) -> dict[str, Any]:
    running = [g for g in cluster.guests.values() if g.node == node.name and g.status == "running"]
    usages = [guest_usage(g, now) for g in running]
    cpu = sum(float(u["cpu"]) * g.cores for u, g in zip(usages, running, strict=True)) / node.cpus
    mem = NODE_BASE_MEMORY + sum(int(u["mem"]) for u in usages)
    return {
        "cpu": round(min(1.0, cpu + 0.01), 4),
        "maxcpu": node.cpus,
        "mem": min(mem, node.memory),
        "maxmem": node.memory,
        "disk": NODE_ROOTFS // 5,
        "maxdisk": NODE_ROOTFS,
        "uptime": int(now - cluster.boot_time) if node.online else 0,
    }


def node_row(cluster: Cluster, node: Node, now: float) -> dict[str, Any]:
    return {
        "id": f"node/{node.name}",
        "type": "node",
        "node": node.name,
        "status": "online" if node.online else "offline",
        "level": "",
        "cgroup-mode": 2,
        **node_usage(cluster, node, now),
    }


def storage_row(cluster: Cluster, storage: Storage, node: Node) -> dict[str, Any]:
    return {
        "id": f"storage/{node.name}/{storage.id}",
        "type": "storage",
        "node": node.name,
        "storage": storage.id,
        "status": "available",
        "plugintype": storage.type,
        "content": ",".join(storage.content),
        "shared": 1 if storage.shared else 0,
        "disk": cluster.used_bytes(storage, node.name),
        "maxdisk": storage.total,
    }


def task_entry(task: Task) -> dict[str, Any]:
    """One task as the task lists and /status show it; token tasks split user and tokenid."""
    user, _, tokenid = task.user.partition("!")
    entry: dict[str, Any] = {
        "upid": task.upid,
        "node": task.node,
        "pid": task.pid,
        "pstart": task.pstart,
        "starttime": task.starttime,
        "type": task.type,
        "id": task.id,
        "user": user,
    }
    if tokenid:
        entry["tokenid"] = tokenid
    return entry
