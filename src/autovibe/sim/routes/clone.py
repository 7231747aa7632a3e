"""``POST .../clone``: full and linked clones, from the current state or a snapshot (SEMANTICS §7).

The sync checks (500 before any UPID) come first, in PVE's order; the new VM's config is created at
once with ``lock: clone`` so its VMID is taken the moment the call returns, which is exactly why two
clients racing on one ``/cluster/nextid`` answer collide ("config file already exists").
"""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import SimApiError, TaskError, runtime_error
from autovibe.sim.guests import NET_KEY_RE, VOLATILE_KEYS, copy, ensure_unlocked, spawn, wait
from autovibe.sim.model import Guest, format_size, join_propstring, split_propstring
from autovibe.sim.registry import Call, route
from autovibe.sim.routes.qemu import destroy_guest
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind


@route("POST", "/nodes/{node}/qemu/{vmid}/clone")
def clone(call: Call) -> str:
    p, cluster = call.params, call.cluster
    source = cluster.guest(p["node"], p["vmid"])
    newid = int(p["newid"])
    if "pool" in p and p["pool"] not in cluster.pools:
        raise SimApiError(403, f"Permission check failed (pool '{p['pool']}' does not exist)")
    target = p.get("target")
    if target is not None and target not in cluster.nodes:
        raise runtime_error(f"no such cluster node '{target}'")
    full = bool(p["full"]) if "full" in p else not source.is_template
    _check_storage_params(cluster, p, full, target)
    ensure_unlocked(call, source)
    config = _source_config(source, p.get("snapname"))
    disks = source.disks(config)
    _check_disks(cluster, disks, full=full, target=target, snapname=p.get("snapname"))
    if newid in cluster.guests:
        raise runtime_error(f"unable to create VM {newid}: config file already exists")
    cluster.guests[newid] = Guest(newid, source.node, {"lock": "clone"})
    return spawn(
        call,
        CLONE,
        source.node,
        source.vmid,
        newid=newid,
        config=config,
        full=full,
        storage=p.get("storage"),
        target=target,
        name=p.get("name"),
        description=p.get("description"),
        pool=p.get("pool"),
        source_name=source.config.get("name", str(source.vmid)),
    )


def _check_storage_params(cluster: Cluster, p: dict[str, Any], full: bool, target: str | None) -> None:
    if not full:
        for key in ("storage", "format"):
            if key in p:
                raise runtime_error(f"parameter '{key}' not allowed for linked clones")
    storage_id = p.get("storage")
    if storage_id is None:
        return
    storage = cluster.storages.get(storage_id)
    if storage is None:
        raise runtime_error(f"storage '{storage_id}' does not exist")
    if "images" not in storage.content:
        raise SimApiError(400, f"storage '{storage_id}' does not support vm images")
    if target is not None and not storage.shared:
        raise runtime_error(f"can't clone to non-shared storage '{storage_id}'")


def _source_config(source: Guest, snapname: str | None) -> dict[str, str]:
    if snapname is None:
        return dict(source.config)
    if snapname not in source.snapshots:
        raise runtime_error(f"snapshot '{snapname}' does not exist")
    return dict(source.snapshots[snapname])


# Storage types whose `copy` feature lacks `snap`: PVE cannot full-clone from their snapshots
# (ZFSPoolPlugin volume_has_feature: copy => { base, current }).
NO_COPY_FROM_SNAPSHOT = frozenset({"zfspool"})


def _check_disks(
    cluster: Cluster, disks: dict[str, str], *, full: bool, target: str | None, snapname: str | None
) -> None:
    for key, volid in sorted(disks.items()):
        volume = cluster.volumes.get(volid)
        if volume is None:
            continue
        is_base = volid.split(":", 1)[1].split("/")[-1].startswith("base-")
        if not full and not is_base:
            raise runtime_error(f"Linked clone feature is not supported for '{volid}' ({key})")
        if full and snapname is not None and cluster.storages[volume.storage].type in NO_COPY_FROM_SNAPSHOT:
            raise runtime_error("Full clone feature is not available")
        if target is not None and not cluster.storages[volume.storage].shared:
            raise runtime_error(f"can't clone VM to node '{target}' (VM uses local storage)")


def _new_config(cluster: Cluster, task: Task) -> dict[str, str]:
    """The copied config: volatile keys dropped, new MACs and SMBIOS UUID, the new name."""
    args = task.args
    dropped = VOLATILE_KEYS | {"template"}
    config = {k: v for k, v in args["config"].items() if k not in dropped and not k.startswith("unused")}
    for key, value in list(config.items()):
        if NET_KEY_RE.match(key):
            head, opts = split_propstring(value)
            model = head.split("=")[0]
            config[key] = join_propstring(f"{model}={cluster.new_mac()}", opts)
    config["smbios1"] = f"uuid={cluster.new_uuid()}"
    if "vmgenid" in config:
        config["vmgenid"] = cluster.new_uuid()
    config["name"] = args["name"] or f"Copy-of-VM-{args['source_name']}"
    if args["description"] is not None:
        config["description"] = args["description"]
    config["lock"] = "clone"
    return config


def _clone_begin(cluster: Cluster, task: Task) -> list[Phase]:
    args = task.args
    new = cluster.guests[int(args["newid"])]
    new.config = _new_config(cluster, task)
    cluster.firewall.clone_guest(int(args["vmid"]), new.vmid)  # the source's firewall config comes too
    phases: list[Phase] = [wait(1.0)]
    for key, volid in sorted(new.disks().items()):
        source = cluster.volumes.get(volid)
        if source is None:
            continue
        _, opts = split_propstring(new.config[key])
        if args["full"]:
            storage = args["storage"] or source.storage
            task.log.append(f"create full clone of drive {key} ({volid})")
            vol = cluster.alloc_volume(storage, task.node, new.vmid, source.size, used=source.used)
            src_loc = cluster.storages[source.storage].location(source.node)
            phases.append(copy(source.used, src_loc, cluster.storages[storage].location(task.node)))
        else:
            task.log.append(f"create linked clone of drive {key} ({volid})")
            vol = cluster.alloc_volume(source.storage, task.node, new.vmid, source.size, linked_from=volid)
            phases.append(wait(0.5))
        opts["size"] = format_size(vol.size)
        new.config[key] = join_propstring(vol.volid, opts)
    return phases


def _clone_finish(cluster: Cluster, task: Task) -> None:
    new = cluster.guests[int(task.args["newid"])]
    new.config.pop("lock", None)
    if task.args["target"]:
        new.node = task.args["target"]
        for volume in cluster.volumes.values():
            if volume.vmid == new.vmid and volume.content != "backup":
                volume.node = new.node
    if task.args["pool"]:
        cluster.pools[task.args["pool"]].setdefault("vms", []).append(new.vmid)


def _clone_abort(cluster: Cluster, task: Task, message: str) -> None:
    """PVE removes the new volumes and config; the task ends "clone failed: ..." (SEMANTICS §7)."""
    newid = int(task.args["newid"])
    if newid in cluster.guests and cluster.guests[newid].lock == "clone":
        destroy_guest(cluster, newid)


def _clone_begin_safely(cluster: Cluster, task: Task) -> list[Phase]:
    try:
        return _clone_begin(cluster, task)
    except TaskError as exc:
        _clone_abort(cluster, task, exc.message)
        raise TaskError(f"clone failed: {exc.message}") from exc


CLONE = task_kind(TaskKind("qmclone", "qmclone", _clone_begin_safely, _clone_finish, _clone_abort))
