"""QEMU guests: list, create, config, pending, destroy, template, resize."""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import SimApiError, TaskError, runtime_error
from autovibe.sim.guests import (
    apply_config,
    check_skiplock,
    config_changes,
    disk_size,
    ensure_unlocked,
    parse_resize,
    spawn,
    task_guest,
    typed_config,
    wait,
    worker_unlocked,
)
from autovibe.sim.model import Guest, format_size, join_propstring, split_propstring
from autovibe.sim.registry import Call, route
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind
from autovibe.sim.usage import guest_usage
from autovibe.sim.views import guest_maxdisk


@route("GET", "/nodes/{node}/qemu")
def list_guests(call: Call) -> list[dict[str, Any]]:
    out = []
    for guest in sorted(call.cluster.guests.values(), key=lambda g: g.vmid):
        if guest.node != call.params["node"]:
            continue
        usage = guest_usage(guest, call.now)
        row: dict[str, Any] = {
            "vmid": guest.vmid,
            "name": guest.name,
            "status": guest.status,
            "cpus": guest.cores,
            "maxmem": guest.memory,
            "maxdisk": guest_maxdisk(call.cluster, guest),
            "disk": 0,
            **usage,
        }
        for key in ("lock", "tags"):
            if key in guest.config:
                row[key] = guest.config[key]
        if guest.is_template:
            row["template"] = 1
        if guest.pid is not None and guest.status == "running":
            row["pid"] = guest.pid
        out.append(row)
    return out


@route("GET", "/nodes/{node}/qemu/{vmid}")
def guest_index(call: Call) -> list[dict[str, str]]:
    call.cluster.guest(call.params["node"], call.params["vmid"])
    names = ("config", "pending", "status", "snapshot", "clone", "resize", "template", "firewall")
    return [{"subdir": n} for n in names]


# ---- create ------------------------------------------------------------------------------------
def _create_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    apply_config(cluster, guest, task.args["changes"], None)
    for key in guest.disks():
        task.log.append(f"{key}: successfully created disk '{split_propstring(guest.config[key])[0]}'")
    return [wait(2.0)]


def _create_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    guest.config.pop("lock", None)
    if task.args.get("start"):
        from autovibe.sim.routes.qemu_power import boot

        boot(cluster, guest, cluster.tasks.time)


def _create_abort(cluster: Cluster, task: Task, message: str) -> None:
    destroy_guest(cluster, int(task.args["vmid"]))


CREATE = task_kind(TaskKind("qmcreate", "qmcreate", _create_begin, _create_finish, _create_abort))


@route("POST", "/nodes/{node}/qemu")
def create(call: Call) -> str:
    """Sync: the VMID must be free anywhere in the cluster; the config appears locked ``create``."""
    p, cluster = call.params, call.cluster
    vmid, node = int(p["vmid"]), p["node"]
    if vmid in cluster.guests:
        other = cluster.guests[vmid].node
        raise runtime_error(f"unable to create VM {vmid} - VM {vmid} already exists on node '{other}'")
    if "pool" in p and p["pool"] not in cluster.pools:
        raise SimApiError(403, f"Permission check failed (pool '{p['pool']}' does not exist)")
    changes = config_changes({k: v for k, v in p.items() if k not in ("pool", "archive", "unique")})
    changes.setdefault("smbios1", f"uuid={cluster.new_uuid()}")
    changes.setdefault("vmgenid", cluster.new_uuid())
    changes["meta"] = f"creation-qemu=9.2.0,ctime={int(call.now)}"
    cluster.guests[vmid] = Guest(vmid, node, {"lock": "create"})
    if "pool" in p:
        cluster.pools[p["pool"]].setdefault("vms", []).append(vmid)
    return spawn(call, CREATE, node, vmid, changes=changes, start=bool(p.get("start")))


# ---- config ------------------------------------------------------------------------------------
@route("GET", "/nodes/{node}/qemu/{vmid}/config")
def get_config(call: Call) -> dict[str, Any]:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    snapname = call.params.get("snapshot")
    if snapname:
        if snapname not in guest.snapshots:
            raise runtime_error(f"snapshot '{snapname}' does not exist")
        section = dict(guest.snapshots[snapname])
        return {**typed_config(section), "digest": guest.digest()}
    return {**typed_config(guest.config), "digest": guest.digest()}


@route("GET", "/nodes/{node}/qemu/{vmid}/pending")
def get_pending(call: Call) -> list[dict[str, Any]]:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    return [{"key": k, "value": v} for k, v in sorted(typed_config(guest.config).items())]


def _update(call: Call) -> tuple[Guest, dict[str, str], str | None]:
    """The sync half of a config update: digest, lock and "nothing to do" checks."""
    p = call.params
    guest = call.cluster.guest(p["node"], p["vmid"])
    changes = config_changes(p)
    delete = p.get("delete")
    if not changes and not delete and not p.get("revert"):
        raise runtime_error("no options specified")
    if p.get("digest") and p["digest"] != guest.digest():
        raise runtime_error("checksum mismatch (file change by other user?)")
    ensure_unlocked(call, guest)
    if "template" in changes:
        raise runtime_error("you can't convert a VM to template with the config API, use the template API")
    return guest, changes, delete


@route("PUT", "/nodes/{node}/qemu/{vmid}/config")
def put_config(call: Call) -> None:
    """Synchronous update: changes are in place when the call returns."""
    guest, changes, delete = _update(call)
    try:
        apply_config(call.cluster, guest, changes, delete)
    except TaskError as exc:
        raise runtime_error(exc.message) from exc


def _config_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    apply_config(cluster, guest, task.args["changes"], task.args["delete"])
    task.log.append(
        f"update VM {guest.vmid}: " + " ".join(f"-{k} {v}" for k, v in task.args["changes"].items())
    )
    return [wait(1.0)]


CONFIG = task_kind(TaskKind("qmconfig", "qmconfig", _config_begin))


@route("POST", "/nodes/{node}/qemu/{vmid}/config")
def post_config(call: Call) -> str | None:
    """Asynchronous update (``qmconfig``). With ``background_delay`` PVE waits for the task itself."""
    guest, changes, delete = _update(call)
    upid = spawn(call, CONFIG, guest.node, guest.vmid, changes=changes, delete=delete)
    task = call.cluster.tasks.tasks[upid]
    if call.params.get("background_delay"):
        call.cluster.advance(call.now + float(call.params["background_delay"]))
        if not task.running:
            if task.exitstatus != "OK":
                raise runtime_error(f"failed to update VM {guest.vmid}: {task.exitstatus}")
            return None
    return upid


# ---- destroy -----------------------------------------------------------------------------------
def destroy_guest(cluster: Cluster, vmid: int) -> None:
    """Remove a guest, every volume it owns (disks, unused, RAM states), its pool membership, ACLs and
    firewall config.

    Its backup archives stay: PVE never removes backups with the guest.
    """
    cluster.guests.pop(vmid, None)
    for volid in [v.volid for v in cluster.volumes.values() if v.vmid == vmid and v.content != "backup"]:
        cluster.free_volume(volid)
    for pool in cluster.pools.values():
        if vmid in pool.get("vms", []):
            pool["vms"].remove(vmid)
    cluster.access.remove_path(f"/vms/{vmid}")  # PVE drops the guest's ACL entries with it
    cluster.firewall.drop_guest(vmid)  # ... and its firewall config


def _destroy_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    worker_unlocked(guest, allow=("suspended",))
    if guest.status == "running":
        raise TaskError(f"VM {guest.vmid} is running - destroy failed")
    if guest.is_template:
        for volid in guest.disks().values():
            users = [v.volid for v in cluster.volumes.values() if v.base == volid]
            if users:
                raise TaskError(f"base volume '{volid}' is still in use by linked cloned")
    guest.config["lock"] = "destroyed"
    return [wait(1.0 + 0.5 * len(guest.disks()))]


def _destroy_finish(cluster: Cluster, task: Task) -> None:
    destroy_guest(cluster, int(task.args["vmid"]))


def _destroy_abort(cluster: Cluster, task: Task, message: str) -> None:
    guest = cluster.guests.get(int(task.args["vmid"]))
    if guest is not None and guest.lock == "destroyed":
        guest.config.pop("lock")


DESTROY = task_kind(TaskKind("qmdestroy", "qmdestroy", _destroy_begin, _destroy_finish, _destroy_abort))


@route("DELETE", "/nodes/{node}/qemu/{vmid}")
def destroy(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    check_skiplock(call)
    if guest.config.get("protection") == "1":
        raise runtime_error(f"can't remove VM {guest.vmid} - protection mode enabled")
    if guest.status == "running":
        raise runtime_error(f"VM {guest.vmid} is running - destroy failed")
    return spawn(call, DESTROY, guest.node, guest.vmid)


# ---- template ----------------------------------------------------------------------------------
def _template_begin(cluster: Cluster, task: Task) -> list[Phase]:
    return [wait(1.0 + len(task_guest(cluster, task).disks()))]


def _template_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    for key, volid in guest.disks().items():
        volume = cluster.volumes.pop(volid)
        volume.volid = volid.replace(f"vm-{guest.vmid}-disk-", f"base-{guest.vmid}-disk-")
        cluster.volumes[volume.volid] = volume
        _, opts = split_propstring(guest.config[key])
        guest.config[key] = join_propstring(volume.volid, opts)
    guest.config["template"] = "1"


TEMPLATE = task_kind(TaskKind("qmtemplate", "qmtemplate", _template_begin, _template_finish))


@route("POST", "/nodes/{node}/qemu/{vmid}/template")
def template(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    ensure_unlocked(call, guest)
    if guest.snapshots:
        raise runtime_error("unable to create template, because VM contains snapshots")
    if guest.is_template:
        raise runtime_error("you can't convert a template to a template")
    if guest.status == "running":
        raise runtime_error("you can't convert a VM to template if VM is running")
    return spawn(call, TEMPLATE, guest.node, guest.vmid)


# ---- resize ------------------------------------------------------------------------------------
def _resize_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    worker_unlocked(guest)
    disk = task.args["disk"]
    if disk not in guest.config:
        raise TaskError(f"disk '{disk}' does not exist")
    volid, opts = split_propstring(guest.config[disk])
    if opts.get("media") == "cdrom":
        raise TaskError("you can't resize a cdrom")
    current = disk_size(cluster, guest.config[disk])
    new = parse_resize(current, task.args["size"])
    if new < current:
        raise TaskError("shrinking disks is not supported")
    storage = cluster.storages[cluster.volumes[volid].storage]
    if cluster.used_bytes(storage, guest.node) + (new - current) > storage.total:
        raise TaskError(f"not enough space on storage '{storage.id}'")
    cluster.volumes[volid].size = new
    opts["size"] = format_size(new)
    guest.config[disk] = join_propstring(volid, opts)
    task.log.append(f"Image resized. New size: {format_size(new)}")
    return [wait(1.0)]


RESIZE = task_kind(TaskKind("resize", "resize", _resize_begin))


@route("PUT", "/nodes/{node}/qemu/{vmid}/resize")
def resize(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    check_skiplock(call)
    if call.params.get("digest") and call.params["digest"] != guest.digest():
        raise runtime_error("checksum mismatch (file change by other user?)")
    return spawn(call, RESIZE, guest.node, guest.vmid, disk=call.params["disk"], size=call.params["size"])
