"""``/status/*``: current state and the power actions (SEMANTICS §6 says which failures are sync)."""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import TaskError, runtime_error
from autovibe.sim.guests import (
    NET_KEY_RE,
    check_skiplock,
    copy,
    ensure_unlocked,
    spawn,
    task_guest,
    wait,
    worker_unlocked,
)
from autovibe.sim.model import Guest, split_propstring
from autovibe.sim.network import bridges
from autovibe.sim.registry import Call, route
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind
from autovibe.sim.usage import begin_boot, guest_usage
from autovibe.sim.views import guest_maxdisk

BOOT_S, STOP_S, SHUTDOWN_S, REBOOT_S, PAUSE_S = 3.0, 2.0, 5.0, 5.0, 1.0


def boot(cluster: Cluster, guest: Guest, now: float) -> None:
    """QEMU starts: counters restart from zero, under the load profile the guest selects now."""
    guest.status, guest.qmpstatus = "running", "running"
    guest.started_at = now
    guest.boots += 1
    begin_boot(guest)
    cluster.tasks.next_pid += 1
    guest.pid = cluster.tasks.next_pid


def halt(guest: Guest) -> None:
    guest.status, guest.qmpstatus, guest.started_at, guest.pid = "stopped", "stopped", None, None
    guest.load_segment = None


@route("GET", "/nodes/{node}/qemu/{vmid}/status")
def status_index(call: Call) -> list[dict[str, str]]:
    call.cluster.guest(call.params["node"], call.params["vmid"])
    names = ("current", "start", "stop", "shutdown", "reboot", "reset", "suspend", "resume")
    return [{"subdir": n} for n in names]


@route("GET", "/nodes/{node}/qemu/{vmid}/status/current")
def current(call: Call) -> dict[str, Any]:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    out: dict[str, Any] = {
        "vmid": guest.vmid,
        "name": guest.name,
        "status": guest.status,
        "qmpstatus": guest.qmpstatus,
        "cpus": guest.cores,
        "maxmem": guest.memory,
        "maxdisk": guest_maxdisk(call.cluster, guest),
        "disk": 0,
        "ha": {"managed": 0},
        **guest_usage(guest, call.now),
    }
    if guest.status == "running":
        out.update({"pid": guest.pid, "running-machine": "pc-i440fx-9.2+pve1", "running-qemu": "9.2.0"})
    if guest.config.get("agent", "0").startswith("1"):
        out["agent"] = 1
    for key in ("lock", "tags"):
        if key in guest.config:
            out[key] = guest.config[key]
    if guest.is_template:
        out["template"] = 1
    return out


# ---- start / stop / shutdown ---------------------------------------------------------------------
def _start_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    if guest.is_template:
        raise TaskError("you can't start a vm if it's a template")
    worker_unlocked(guest, allow=("suspended",))
    if guest.status == "running":
        raise TaskError(f"VM {guest.vmid} already running")
    _check_bridges(cluster, guest, task)
    if guest.lock == "suspended":  # hibernated: load the saved RAM back
        state = cluster.volumes.get(guest.config.get("vmstate", ""))
        loc = cluster.storages[state.storage].location(guest.node) if state else None
        return [wait(BOOT_S)] + ([copy(guest.memory, loc)] if loc else [])
    return [wait(BOOT_S)]


def _check_bridges(cluster: Cluster, guest: Guest, task: Task) -> None:
    """QEMU's network script plugs each NIC into its bridge; a missing bridge makes QEMU exit."""
    present = bridges(cluster.nodes[guest.node])
    for key in sorted(k for k in guest.config if NET_KEY_RE.match(k)):
        _, opts = split_propstring(guest.config[key])
        bridge = opts.get("bridge")
        if bridge is not None and bridge not in present:
            index = key.removeprefix("net")
            task.log.append(f"bridge '{bridge}' does not exist")
            task.log.append(
                f"kvm: -netdev type=tap,id={key},ifname=tap{guest.vmid}i{index},"
                "script=/var/lib/qemu-server/pve-bridge,downscript=/var/lib/qemu-server/pve-bridgedown,"
                "vhost=on: network script /var/lib/qemu-server/pve-bridge failed with status 512"
            )
            raise TaskError("start failed: QEMU exited with code 1")


def _start_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    if guest.lock == "suspended":
        cluster.free_volume(guest.config.pop("vmstate", ""))
        guest.config.pop("lock")
    boot(cluster, guest, cluster.tasks.time)


START = task_kind(TaskKind("qmstart", "qmstart", _start_begin, _start_finish))


@route("POST", "/nodes/{node}/qemu/{vmid}/status/start")
def start(call: Call) -> str:
    """Always async: "already running" is a *task* error for QEMU (SEMANTICS §6)."""
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    check_skiplock(call)
    return spawn(call, START, guest.node, guest.vmid)


def _stop_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    if not task.args.get("skiplock"):
        worker_unlocked(guest, allow=("suspended",))
    return [wait(STOP_S if guest.status == "running" else 0.2)]


def _stop_finish(cluster: Cluster, task: Task) -> None:
    halt(task_guest(cluster, task))


STOP = task_kind(TaskKind("qmstop", "qmstop", _stop_begin, _stop_finish))
SHUTDOWN = task_kind(
    TaskKind(
        "qmshutdown",
        "qmshutdown",
        lambda c, t: [wait(SHUTDOWN_S if task_guest(c, t).status == "running" else 0.2)],
        _stop_finish,
    )
)


@route("POST", "/nodes/{node}/qemu/{vmid}/status/stop")
def stop(call: Call) -> str:
    """Hard stop; stopping a stopped VM succeeds."""
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    return spawn(call, STOP, guest.node, guest.vmid, skiplock=check_skiplock(call))


@route("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown")
def shutdown(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    ensure_unlocked(call, guest)
    if guest.qmpstatus == "paused" and not call.params.get("forceStop"):
        raise runtime_error("VM is paused - cannot shutdown")
    return spawn(call, SHUTDOWN, guest.node, guest.vmid)


# ---- reboot / reset / suspend / resume ---------------------------------------------------------
def _must_run(guest: Guest) -> None:
    if guest.status != "running":
        raise runtime_error(f"VM {guest.vmid} not running")


def _restart_finish(cluster: Cluster, task: Task) -> None:
    boot(cluster, task_guest(cluster, task), cluster.tasks.time)


REBOOT = task_kind(TaskKind("qmreboot", "qmreboot", lambda c, t: [wait(REBOOT_S)], _restart_finish))
RESET = task_kind(TaskKind("qmreset", "qmreset", lambda c, t: [wait(PAUSE_S)], _restart_finish))


@route("POST", "/nodes/{node}/qemu/{vmid}/status/reboot")
def reboot(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    _must_run(guest)
    ensure_unlocked(call, guest)
    if guest.qmpstatus == "paused":
        raise runtime_error("VM is paused - cannot shutdown")
    return spawn(call, REBOOT, guest.node, guest.vmid)


@route("POST", "/nodes/{node}/qemu/{vmid}/status/reset")
def reset(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    _must_run(guest)
    ensure_unlocked(call, guest)
    return spawn(call, RESET, guest.node, guest.vmid)


def _pause_finish(cluster: Cluster, task: Task) -> None:
    task_guest(cluster, task).qmpstatus = "paused"


def _hibernate_begin(cluster: Cluster, task: Task) -> list[Phase]:
    guest = task_guest(cluster, task)
    worker_unlocked(guest)
    first_disk = next(iter(guest.disks().values()), None)
    storage = cluster.volumes[first_disk].storage if first_disk else "local-lvm"
    volume = cluster.alloc_volume(
        storage, guest.node, guest.vmid, guest.memory, used=guest.memory, state_of="suspend"
    )
    guest.config["lock"], guest.config["vmstate"] = "suspending", volume.volid
    return [wait(PAUSE_S), copy(guest.memory, cluster.storages[storage].location(guest.node))]


def _hibernate_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    halt(guest)
    guest.config["lock"] = "suspended"


def _hibernate_abort(cluster: Cluster, task: Task, message: str) -> None:
    guest = task_guest(cluster, task)
    if guest.lock == "suspending":
        cluster.free_volume(guest.config.pop("vmstate", ""))
        guest.config.pop("lock")


PAUSE = task_kind(TaskKind("qmpause", "qmpause", lambda c, t: [wait(PAUSE_S)], _pause_finish))
HIBERNATE = task_kind(
    TaskKind("qmsuspend", "qmsuspend", _hibernate_begin, _hibernate_finish, _hibernate_abort)
)


@route("POST", "/nodes/{node}/qemu/{vmid}/status/suspend")
def suspend(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    _must_run(guest)
    ensure_unlocked(call, guest)
    kind = HIBERNATE if call.params.get("todisk") else PAUSE
    return spawn(call, kind, guest.node, guest.vmid)


def _resume_finish(cluster: Cluster, task: Task) -> None:
    guest = task_guest(cluster, task)
    if guest.status == "running":
        guest.qmpstatus = "running"


RESUME = task_kind(TaskKind("qmresume", "qmresume", lambda c, t: [wait(PAUSE_S)], _resume_finish))


@route("POST", "/nodes/{node}/qemu/{vmid}/status/resume")
def resume(call: Call) -> str:
    guest = call.cluster.guest(call.params["node"], call.params["vmid"])
    if guest.is_template:
        raise runtime_error(f"VM {guest.vmid} is a template and cannot be resumed!")
    if guest.lock == "suspended":  # resuming a hibernated VM is a start
        return spawn(call, START, guest.node, guest.vmid)
    _must_run(guest)
    return spawn(call, RESUME, guest.node, guest.vmid)
