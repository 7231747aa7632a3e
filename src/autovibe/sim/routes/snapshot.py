"""Snapshots: a tree through ``parent`` links, optional RAM state, and storage-specific rollback.

Follows SEMANTICS §5: reserved names fail before forking; everything else (template, lock, duplicate
name, ZFS's newest-only rollback) fails inside the worker as ``TASK ERROR``.
"""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import TaskError, runtime_error
from autovibe.sim.guests import (
    VOLATILE_KEYS,
    copy,
    ensure_unlocked,
    spawn,
    task_guest,
    typed_config,
    wait,
    worker_unlocked,
)
from autovibe.sim.model import Guest
from autovibe.sim.registry import Call, route
from autovibe.sim.routes.qemu_power import boot, halt
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind

RESERVED = ("current", "pending")
# Keys a snapshot section never copies from the current config (SEMANTICS §5); `parent` IS copied,
# which is how the tree forms.
NOT_SNAPSHOTTED = (VOLATILE_KEYS - {"parent"}) | {"digest", "description"}


@route("GET", "/nodes/{node}/qemu/{vmid}/snapshot")
def list_snapshots(call: Call) -> list[dict[str, Any]]:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    out = []
    for name, section in guest.snapshots.items():
        entry: dict[str, Any] = {
            "name": name,
            "snaptime": int(section["snaptime"]),
            "vmstate": 1 if section.get("vmstate") else 0,
            "description": section.get("description", ""),
        }
        for key in ("parent", "snapstate"):
            if key in section:
                entry[key] = section[key]
        out.append(entry)
    current: dict[str, Any] = {
        "name": "current",
        "digest": guest.digest(),
        "running": 1 if guest.status == "running" else 0,
        "description": "You are here!",
    }
    if "parent" in guest.config:
        current["parent"] = guest.config["parent"]
    return [*out, current]


def _snapshot(guest: Guest, name: str) -> dict[str, str]:
    if name not in guest.snapshots:
        raise runtime_error(f"snapshot '{name}' does not exist")
    return guest.snapshots[name]


@route("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}")
def snapshot_index(call: Call) -> list[dict[str, str]]:
    _snapshot(call.cluster.guest(call.params["node"], call.params["vmid"]), call.params["snapname"])
    return [{"cmd": "rollback"}, {"cmd": "config"}]


@route("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config")
def snapshot_config(call: Call) -> dict[str, Any]:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    section = _snapshot(guest, call.params["snapname"])
    return {**typed_config(section), "snaptime": int(section["snaptime"])}


@route("PUT", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config")
def update_snapshot_config(call: Call) -> None:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    section = _snapshot(guest, call.params["snapname"])
    ensure_unlocked(call, guest)
    if "description" in call.params:
        section["description"] = call.params["description"]


# ---- create ------------------------------------------------------------------------------------
def _create_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    if guest.is_template:
        raise TaskError("you can't take a snapshot if it's a template")
    worker_unlocked(guest)
    if name in guest.snapshots:
        raise TaskError(f"snapshot name '{name}' already used")
    guest.config["lock"] = "snapshot"
    section = {
        k: v for k, v in guest.config.items() if k not in NOT_SNAPSHOTTED and not k.startswith("unused")
    }
    section.update(snapstate="prepare", snaptime=str(int(cluster.tasks.time)))
    if task.args.get("description"):
        section["description"] = task.args["description"]
    guest.snapshots[name] = section
    phases = [wait(1.0)]
    # RAM is saved only when asked AND the VM runs; otherwise the request is silently ignored.
    if task.args.get("vmstate") and guest.status == "running":
        storage = _state_storage(cluster, guest)
        volume = cluster.alloc_volume(
            storage, guest.node, guest.vmid, guest.memory, used=guest.memory, state_of=name
        )
        section.update(vmstate=volume.volid, runningmachine="pc-i440fx-9.2+pve1", runningcpu="kvm64,enforce")
        task.log.append(f"saving VM state and RAM using storage '{storage}'")
        phases.append(copy(guest.memory, cluster.storages[storage].location(guest.node)))
    return phases


def _state_storage(cluster: Cluster, guest: Guest) -> str:
    """``vmstatestorage`` if set, else the storage of the first disk, as PVE picks it."""
    if "vmstatestorage" in guest.config:
        return guest.config["vmstatestorage"]
    disks = guest.disks()
    return cluster.volumes[disks[sorted(disks)[0]]].storage if disks else "local-lvm"


def _create_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    guest.snapshots[name].pop("snapstate", None)
    for volid in guest.disks().values():
        if volid in cluster.volumes:
            cluster.volumes[volid].snapshots.append(name)
    guest.config.pop("lock", None)
    guest.config["parent"] = name


def _create_abort(cluster: Cluster, task: Task, message: str) -> None:
    """On failure the partial snapshot is removed again (SEMANTICS §5)."""
    guest = cluster.guests.get(int(task.args["vmid"]))
    if guest is None or guest.lock != "snapshot":
        return
    section = guest.snapshots.get(task.args["snapname"], {})
    if section.get("snapstate") == "prepare":
        cluster.free_volume(section.get("vmstate", ""))
        del guest.snapshots[task.args["snapname"]]
    guest.config.pop("lock", None)


SNAPSHOT = task_kind(TaskKind("qmsnapshot", "qmsnapshot", _create_begin, _create_finish, _create_abort))


@route("POST", "/nodes/{node}/qemu/{vmid}/snapshot")
def create_snapshot(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    name = call.params["snapname"]
    if name.lower() in RESERVED:
        raise runtime_error(f"unable to use snapshot name '{name}' (reserved name)")
    return spawn(
        call,
        SNAPSHOT,
        guest.node,
        guest.vmid,
        snapname=name,
        vmstate=bool(call.params.get("vmstate")),
        description=call.params.get("description"),
    )


# ---- rollback ----------------------------------------------------------------------------------
def _rollback_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    if name not in guest.snapshots:
        raise TaskError(f"snapshot '{name}' does not exist")
    section = guest.snapshots[name]
    if "snapstate" in section:
        raise TaskError(f"unable to rollback to incomplete snapshot (snapstate = {section['snapstate']})")
    if guest.is_template:
        raise TaskError("you can't rollback if vm is a template")
    worker_unlocked(guest)
    _check_rollback_possible(cluster, guest, name)
    if guest.status == "running":
        task.log.append("stopping VM before rollback")
        halt(guest)
    guest.config["lock"] = "rollback"
    phases = [wait(2.0)]
    state = cluster.volumes.get(section.get("vmstate", ""))
    if state is not None:
        phases.append(copy(guest.memory, cluster.storages[state.storage].location(guest.node)))
    return phases


def _check_rollback_possible(cluster: Cluster, guest: Guest, name: str) -> None:
    """ZFS can only roll a volume back to its newest snapshot (ZFSPoolPlugin volume_rollback_is_possible)."""
    for volid in guest.disks(guest.snapshots[name]).values():
        volume = cluster.volumes.get(volid)
        if volume is None or cluster.storages[volume.storage].snapshot_rollback != "latest":
            continue
        if name in volume.snapshots and volume.snapshots[-1] != name:
            raise TaskError(f"can't rollback, '{name}' is not most recent snapshot on '{volid}'")


def _rollback_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    section = guest.snapshots[name]
    kept = {k: v for k, v in guest.config.items() if k == "description" or k.startswith("unused")}
    restored = {
        k: v
        for k, v in section.items()
        if k not in ("snaptime", "vmstate", "runningmachine", "runningcpu", "description")
    }
    old_disks = set(guest.disks().values())
    guest.config = {**restored, **kept, "parent": name}
    for volid in sorted(old_disks - set(guest.disks().values())):
        index = 0
        while f"unused{index}" in guest.config:
            index += 1
        guest.config[f"unused{index}"] = volid
    # With saved RAM the VM resumes where it was, whatever `start` says (SEMANTICS §5).
    if section.get("vmstate") or task.args.get("start"):
        boot(cluster, guest, cluster.tasks.time)


def _unlock_abort(cluster: Cluster, task: Task, message: str) -> None:
    guest = cluster.guests.get(int(task.args["vmid"]))
    if guest is not None and guest.lock in ("rollback", "snapshot-delete"):
        guest.config.pop("lock")


ROLLBACK = task_kind(TaskKind("qmrollback", "qmrollback", _rollback_begin, _rollback_finish, _unlock_abort))


@route("POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback")
def rollback(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    return spawn(
        call,
        ROLLBACK,
        guest.node,
        guest.vmid,
        snapname=call.params["snapname"],
        start=bool(call.params.get("start")),
    )


# ---- delete ------------------------------------------------------------------------------------
def _delete_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    if name not in guest.snapshots:
        raise TaskError(f"snapshot '{name}' does not exist")
    if guest.is_template:
        raise TaskError("you can't delete a snapshot if vm is a template")
    worker_unlocked(guest)
    guest.config["lock"] = "snapshot-delete"
    guest.snapshots[name]["snapstate"] = "delete"
    return [wait(1.0)]


def _delete_finish(cluster: Cluster, task: Task) -> None:
    """Drop the snapshot and re-parent its children (and ``current``) to its own parent."""
    guest = task_guest(cluster, task)
    name = task.args["snapname"]
    section = guest.snapshots.pop(name)
    cluster.free_volume(section.get("vmstate", ""))
    for volume in cluster.volumes.values():
        if volume.vmid == guest.vmid and name in volume.snapshots:
            volume.snapshots.remove(name)
    for child in [*guest.snapshots.values(), guest.config]:
        if child.get("parent") == name:
            if "parent" in section:
                child["parent"] = section["parent"]
            else:
                child.pop("parent")
    guest.config.pop("lock", None)


SNAPDEL = task_kind(TaskKind("qmdelsnapshot", "qmdelsnapshot", _delete_begin, _delete_finish, _unlock_abort))


@route("DELETE", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}")
def delete_snapshot(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    return spawn(call, SNAPDEL, guest.node, guest.vmid, snapname=call.params["snapname"])
