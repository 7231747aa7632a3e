"""Storages: the datacenter list, a node's view with capacity, volume listings, volume info and deletion.

Below ``.../content/`` the rest of the path is the volume ID, slashes included (the router joins it, as
PVE's ``fragmentDelimiter``); ``storage:`` may be left off the volume when the path names the storage.
"""

from __future__ import annotations

import re
from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import TaskError, param_error, permission_error, runtime_error
from autovibe.sim.model import Storage, Volume, split_propstring
from autovibe.sim.privileges import has_privileges
from autovibe.sim.registry import Call, route
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind

# A backup archive's file name as pve-storage's archive_info recognises it (anything else in the dump
# directory, such as a ``.vma.dat`` being written, is not listed).
ARCHIVE_RE = re.compile(
    r"^vzdump-(?P<type>qemu|lxc|openvz)-(?P<vmid>\d+)-(?P<time>\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2})"
    r"\.(?P<format>tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?)$"
)
_OWNER_RE = re.compile(r"(?:^|/)(?:vm|base)-(\d+)-|^backup/vzdump-\w+-(\d+)-")
# Where each storage type keeps its volumes, for ``path`` (PVE's defaults for these plugins).
_DIR_ROOT = {"local": "/var/lib/vz"}


@route("GET", "/storage")
def list_storage(call: Call) -> list[dict[str, Any]]:
    return [
        {
            "storage": s.id,
            "type": s.type,
            "content": ",".join(s.content),
            "shared": 1 if s.shared else 0,
            "digest": "",
        }
        for s in call.cluster.storages.values()
    ]


def _status(call: Call, storage: Storage, node: str) -> dict[str, Any]:
    used = call.cluster.used_bytes(storage, node)
    return {
        "storage": storage.id,
        "type": storage.type,
        "content": ",".join(storage.content),
        "shared": 1 if storage.shared else 0,
        "active": 1,
        "enabled": 1,
        "total": storage.total,
        "used": used,
        "avail": storage.total - used,
        "used_fraction": round(used / storage.total, 6),
    }


@route("GET", "/nodes/{node}/storage")
def node_storage(call: Call) -> list[dict[str, Any]]:
    p = call.params
    rows = [_status(call, s, p["node"]) for s in call.cluster.storages.values()]
    if "content" in p:
        wanted = set(str(p["content"]).split(","))
        rows = [r for r in rows if wanted & set(r["content"].split(","))]
    if "storage" in p:
        rows = [r for r in rows if r["storage"] == p["storage"]]
    return rows


@route("GET", "/nodes/{node}/storage/{storage}/status")
def storage_status(call: Call) -> dict[str, Any]:
    storage = call.cluster.storage(call.params["storage"], call.params["node"])
    return _status(call, storage, call.params["node"])


@route("GET", "/nodes/{node}/storage/{storage}/content")
def storage_content(call: Call) -> list[dict[str, Any]]:
    """Volumes on this storage as seen from ``node`` (``vmid`` and ``content`` filter): disks, RAM-state
    volumes (listed as ``images``, as PVE does) and backup archives."""
    p = call.params
    storage = call.cluster.storage(p["storage"], p["node"])
    loc = storage.location(p["node"])
    rows = []
    for vol in sorted(call.cluster.volumes.values(), key=lambda v: v.volid):
        if storage.location(vol.node) != loc or vol.storage != storage.id:
            continue
        if "vmid" in p and vol.vmid != int(p["vmid"]):
            continue
        row = _backup_row(vol) if vol.content == "backup" else _image_row(vol, call.now)
        if row is not None:
            rows.append(row)
    if "content" in p:
        rows = [r for r in rows if r["content"] == p["content"]]
    return rows


def _image_row(vol: Volume, now: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "volid": vol.volid,
        "vmid": vol.vmid,
        "size": vol.size,
        "used": vol.used,
        "format": vol.format,
        "content": "images",
        "ctime": int(now),
    }
    if vol.base:
        row["parent"] = vol.base.split(":", 1)[1]
    return row


def _backup_row(vol: Volume) -> dict[str, Any] | None:
    match = ARCHIVE_RE.match(vol.volid.split(":", 1)[1].removeprefix("backup/"))
    if match is None:
        return None
    row: dict[str, Any] = {
        "volid": vol.volid,
        "vmid": vol.vmid,
        "size": vol.size,
        "format": match["format"],
        "content": "backup",
        "ctime": vol.ctime or 0,
        "subtype": "qemu" if match["type"] == "qemu" else "lxc",
    }
    if vol.notes:
        row["notes"] = vol.notes.splitlines()[0]
    if vol.protected:
        row["protected"] = 1
    return row


def real_volume_id(storage_id: str | None, volume: str) -> tuple[str, str]:
    """PVE's ``$real_volume_id``: ``(volid, storage)``; a bare volume name takes the path's storage."""
    if ":" in volume:
        sid = volume.split(":", 1)[0]
        if storage_id and sid != storage_id:
            raise param_error({"volume": f"storage ID mismatch ({sid} != {storage_id})"})
        return volume, sid
    if not storage_id:
        raise param_error({"volume": "no storage specified - incomplete volume ID"})
    return f"{storage_id}:{volume}", storage_id


def volume_path(storage: Storage, volid: str) -> str:
    """The path PVE reports for a volume: a file under the dir storage, a block device otherwise."""
    name = volid.split(":", 1)[1]
    if storage.type == "dir":
        root = _DIR_ROOT.get(storage.id, f"/mnt/pve/{storage.id}")
        if name.startswith("backup/"):
            return f"{root}/dump/{name.removeprefix('backup/')}"
        return f"{root}/images/{name}"
    leaf = name.split("/")[-1]
    if storage.type == "lvmthin":
        return f"/dev/pve/{leaf}"
    if storage.type == "zfspool":
        return f"/dev/zvol/rpool/data/{leaf}"
    return f"rbd:rbd/{leaf}:conf=/etc/pve/ceph.conf:id=admin:keyring=/etc/pve/priv/ceph/{storage.id}.keyring"


def _volume_on(cluster: Cluster, storage: Storage, node: str, volid: str) -> Volume | None:
    volume = cluster.volumes.get(volid)
    if volume is None or storage.location(volume.node) != storage.location(node):
        return None
    return volume


@route("GET", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_info(call: Call) -> dict[str, Any]:
    p = call.params
    volid, storage_id = real_volume_id(p.get("storage"), p["volume"])
    storage = call.cluster.storage(storage_id, p["node"])
    volume = _volume_on(call.cluster, storage, p["node"], volid)
    if volume is None:
        raise runtime_error(f"volume_size_info on '{volid}' failed - no format")
    used = volume.size if volume.content == "backup" else volume.used
    entry: dict[str, Any] = {
        "path": volume_path(storage, volid),
        "size": volume.size,
        "used": used,
        "format": volume.format,
    }
    if volume.notes is not None:
        entry["notes"] = volume.notes
    if volume.content == "backup":
        entry["protected"] = 1 if volume.protected else 0
    return entry


# ---- delete (``imgdel``) -----------------------------------------------------------------------
def _owner(cluster: Cluster, volid: str) -> int | None:
    if volid in cluster.volumes:
        return cluster.volumes[volid].vmid
    match = _OWNER_RE.search(volid.split(":", 1)[1])
    return int(match.group(1) or match.group(2)) if match else None


def _in_use_by(cluster: Cluster, volid: str) -> int | None:
    """The guest whose config (or a snapshot of it) references ``volid``."""
    for guest in cluster.guests.values():
        for section in (guest.config, *guest.snapshots.values()):
            if any(split_propstring(value)[0] == volid for value in section.values()):
                return guest.vmid
    return None


def _imgdel_begin(cluster: Cluster, task: Task) -> list[Phase]:
    volid, storage = task.args["volid"], cluster.storages[task.args["storage"]]
    volume = _volume_on(cluster, storage, task.node, volid)
    name = volid.split(":", 1)[1]
    if volume is None:
        if storage.type == "dir":
            raise TaskError(f"unlink '{volume_path(storage, volid)}' failed - No such file or directory")
        raise TaskError(f"no such volume '{volid}'")
    if volume.protected:
        raise TaskError(f"cannot remove protected volume '{name}' on '{storage.id}'")
    if any(v.base == volid for v in cluster.volumes.values()):
        raise TaskError(f"base volume '{name}' is still in use by linked clones")
    user = _in_use_by(cluster, volid)
    if user is not None:  # the simulator keeps configs consistent; PVE would leave a dangling reference
        raise TaskError(f"volume '{volid}' is in use by VM {user} - remove it from the VM's config instead")
    return [Phase("wait", 1.0)]


def _imgdel_finish(cluster: Cluster, task: Task) -> None:
    cluster.free_volume(task.args["volid"])
    task.log.append(f"Removed volume '{task.args['volid']}'")


IMGDEL = task_kind(TaskKind("imgdel", "imgdel", _imgdel_begin, _imgdel_finish))


@route("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}")
def delete_volume(call: Call) -> str | None:
    """Async (``imgdel``, id ``<owner vmid>@<storage>``); ``delay`` waits for the task like PVE does."""
    p, cluster = call.params, call.cluster
    volid, storage_id = real_volume_id(p.get("storage"), p["volume"])
    storage = cluster.storage(storage_id, p["node"])
    owner = _owner(cluster, volid)
    volume = cluster.volumes.get(volid)
    authid = call.identity.authid if call.identity else "root@pam"
    is_backup = (volume is not None and volume.content == "backup") or volid.split(":", 1)[1].startswith(
        "backup/"
    )
    _check_delete_permission(call, storage.id, owner if is_backup else None)
    wid = f"{owner}@{storage.id}" if owner is not None else storage.id
    task = cluster.tasks.spawn(
        cluster, IMGDEL, node=p["node"], wid=wid, user=authid, args={"volid": volid, "storage": storage.id}
    )
    if p.get("delay"):
        cluster.advance(call.now + float(p["delay"]))
        if not task.running:
            if task.exitstatus != "OK" and not (task.exitstatus or "").startswith("WARNINGS"):
                raise runtime_error(task.exitstatus or "unexpected status")
            return None
    return task.upid


def _check_delete_permission(call: Call, storage_id: str, backup_owner: int | None) -> None:
    """``Datastore.Allocate`` on the storage, or for a guest's backup ``Datastore.AllocateSpace`` there
    and ``VM.Backup`` on the guest (pve-storage Content.pm)."""
    if call.identity is None:
        return
    access, pools = call.cluster.access, call.cluster.pools
    needed = [(f"/storage/{storage_id}", "Datastore.Allocate")]
    if backup_owner is not None:
        needed = [
            (f"/storage/{storage_id}", "Datastore.AllocateSpace"),
            (f"/vms/{backup_owner}", "VM.Backup"),
        ]
    for path, priv in needed:
        if not has_privileges(access, call.identity, path, [priv], pools=pools):
            raise permission_error(path, priv)
