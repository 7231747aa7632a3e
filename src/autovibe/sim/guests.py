"""Helpers the QEMU handlers share: lock checks, forking workers, editing configs."""

from __future__ import annotations

import re
from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import SimApiError, TaskError, param_error, runtime_error
from autovibe.sim.model import DISK_KEY_RE, Guest, format_size, join_propstring, parse_size, split_propstring
from autovibe.sim.registry import Call
from autovibe.sim.schema import ApiSchema
from autovibe.sim.tasks import Phase, Task, TaskKind
from autovibe.sim.usage import profile_change

NET_KEY_RE = re.compile(r"^net\d+$")
ALLOC_RE = re.compile(r"^([a-zA-Z][\w.-]*):(\d+(?:\.\d+)?)$")  # STORAGE:SIZE_GiB allocates a new disk
NET_MODELS = {
    "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
    "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
}  # fmt: skip
# Parameters of config calls that are instructions, not config keys.
CONTROL_PARAMS = {
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "background_delay",
    "force",
    "start",
}
# Keys a clone or snapshot never carries over (SEMANTICS §5 and §7).
VOLATILE_KEYS = {
    "snapshots",
    "parent",
    "snaptime",
    "vmstate",
    "snapstate",
    "runningcpu",
    "runningmachine",
    "lock",
}


def lock_error(guest: Guest) -> SimApiError:
    return runtime_error(f"VM is locked ({guest.lock})")


def check_skiplock(call: Call) -> bool:
    """``skiplock`` is root@pam's alone (400 for anyone else, SEMANTICS §4). Returns whether it is set."""
    if not call.params.get("skiplock"):
        return False
    if call.identity is None or call.identity.authid != "root@pam":
        raise param_error({"skiplock": "Only root may use this option."})
    return True


def ensure_unlocked(call: Call, guest: Guest, *, allow: tuple[str, ...] = ()) -> None:
    """Sync lock check before forking: 500 ``VM is locked (x)``."""
    if guest.lock and guest.lock not in allow and not check_skiplock(call):
        raise lock_error(guest)


def worker_unlocked(guest: Guest, *, allow: tuple[str, ...] = ()) -> None:
    """The same check inside a worker: the task fails with ``VM is locked (x)``."""
    if guest.lock and guest.lock not in allow:
        raise TaskError(f"VM is locked ({guest.lock})")


def spawn(call: Call, kind: TaskKind, guest_node: str, vmid: int | str, **args: Any) -> str:
    """Fork a worker on ``guest_node`` as the caller; returns the UPID."""
    user = call.identity.authid if call.identity else "root@pam"
    task = call.cluster.tasks.spawn(
        call.cluster, kind, node=guest_node, wid=str(vmid), user=user, args={"vmid": vmid, **args}
    )
    return task.upid


def task_guest(cluster: Cluster, task: Task) -> Guest:
    guest = cluster.guests.get(int(task.args["vmid"]))
    if guest is None:
        raise TaskError(
            f"Configuration file 'nodes/{task.node}/qemu-server/{task.args['vmid']}.conf' does not exist"
        )
    return guest


def wait(seconds: float) -> Phase:
    return Phase("wait", seconds)


def copy(nbytes: float, *locations: str) -> Phase:
    return Phase("copy", float(nbytes), sorted(set(locations)))


def config_changes(params: dict[str, Any]) -> dict[str, str]:
    """The config keys a create/update call sets, as strings (booleans as 0/1)."""
    changes = {}
    for key, value in params.items():
        if key in CONTROL_PARAMS:
            continue
        changes[key] = str(int(value)) if isinstance(value, bool) else str(value)
    return changes


def apply_config(cluster: Cluster, guest: Guest, changes: dict[str, str], delete: str | None) -> None:
    """Write changes and deletions into the config, allocating ``STORAGE:GiB`` disks and MACs.

    Deleting a disk drive turns it into ``unusedN`` (its data is kept, as PVE does); deleting an
    ``unusedN`` entry frees the volume. A running guest whose ``load-*`` tag changes switches load
    profile now (usage.py).
    """
    with profile_change(guest, cluster.tasks.time):
        _apply_config(cluster, guest, changes, delete)


def _apply_config(cluster: Cluster, guest: Guest, changes: dict[str, str], delete: str | None) -> None:
    for key in split_list(delete):
        if key not in guest.config:
            continue
        value = guest.config.pop(key)
        if DISK_KEY_RE.match(key) and key in guest.disks({key: value}):
            guest.config[_next_unused(guest)] = split_propstring(value)[0]
        elif key.startswith("unused"):
            cluster.free_volume(value)
    for key, value in changes.items():
        if DISK_KEY_RE.match(key):
            value = _allocate_if_asked(cluster, guest, value)
        elif NET_KEY_RE.match(key):
            value = normalise_net(cluster, value)
        guest.config[key] = value


def split_list(text: str | None) -> list[str]:
    """PVE's list parameters: separated by commas, semicolons or spaces."""
    return [k for k in re.split(r"[,;\s]+", text or "") if k]


def _next_unused(guest: Guest) -> str:
    index = 0
    while f"unused{index}" in guest.config:
        index += 1
    return f"unused{index}"


def _allocate_if_asked(cluster: Cluster, guest: Guest, value: str) -> str:
    head, opts = split_propstring(value)
    match = ALLOC_RE.match(head)
    if not match or opts.get("media") == "cdrom":
        return value
    storage_id, size_gib = match.group(1), float(match.group(2))
    if storage_id not in cluster.storages:
        raise TaskError(f"storage '{storage_id}' does not exist")
    volume = cluster.alloc_volume(storage_id, guest.node, guest.vmid, int(size_gib * 1024**3))
    opts["size"] = format_size(volume.size)
    return join_propstring(volume.volid, opts)


def normalise_net(cluster: Cluster, value: str) -> str:
    """PVE writes ``model=MAC`` first and generates a MAC when none is given."""
    head, opts = split_propstring(value)
    if "model" in opts:
        model = opts.pop("model")
        head = f"{model}={opts.pop('macaddr', cluster.new_mac())}"
    elif "=" not in head and head in NET_MODELS:
        head = f"{head}={cluster.new_mac()}"
    return join_propstring(head, opts)


def disk_size(cluster: Cluster, value: str) -> int:
    volid, opts = split_propstring(value)
    if volid in cluster.volumes:
        return cluster.volumes[volid].size
    return parse_size(opts.get("size", "0"))


def parse_resize(current: int, size: str) -> int:
    """``+10G`` grows by 10 GiB; ``30G`` sets the size; a bare number is bytes (PVE's disk-size)."""
    if size.startswith("+"):
        return current + parse_size(size[1:])
    return parse_size(size)


def typed_config(config: dict[str, str]) -> dict[str, Any]:
    """A config as ``GET .../config`` returns it: integers and 0/1 flags where the schema declares
    integer or boolean (``cores: 2``), text everywhere else — PVE 8's ``memory`` is a property string,
    and qemu-server hands ``number`` keys such as ``cpulimit`` back as their config text."""
    returns = ApiSchema.load().endpoint("GET", "/nodes/{node}/qemu/{vmid}/config").returns or {}
    declared = {k: v.get("type") for k, v in returns.get("properties", {}).items()}
    typed: dict[str, Any] = {}
    for key, value in config.items():
        kind = declared.get(key)
        if kind in ("integer", "boolean") and value.lstrip("-").isdigit():
            typed[key] = int(value)
        else:
            typed[key] = value
    return typed
