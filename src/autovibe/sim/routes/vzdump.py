"""``POST /nodes/{node}/vzdump``: a backup job that saves its guests one after the other.

Follows pve-manager's API2/VZDump.pm and VZDump.pm. The call checks parameters and permissions and forks
ONE ``vzdump`` worker (UPID id: the VMID when the job has exactly one guest, else empty). The worker
checks the target storage (a storage without ``backup`` content fails the whole task), takes the
node's global backup lock (a second job on the node waits for it, up to ``lockwait`` minutes), then
backs the guests up in VMID order. Each guest is locked ``backup`` while its archive is written, so
snapshots, config changes and the other lock-checking operations fail with ``VM is locked (backup)``
meanwhile. A guest that is missing or locked fails alone (``ERROR: Backup of VM 101 failed - ...``); the
job goes on with the others and ends ``job errors``.

The archive is written through a ``.dat`` file (counted in the storage's usage, not listed) renamed to
``vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.vma[.zst|.gz|.lzo]`` when done. Timing: see docs/simulator.md.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Callable
from typing import Any

from autovibe.sim.cluster import CLUSTER_NAME, Cluster
from autovibe.sim.errors import TaskError, param_error, permission_error
from autovibe.sim.formats import split_list
from autovibe.sim.model import Guest, Storage, Volume, format_size
from autovibe.sim.privileges import has_privileges
from autovibe.sim.registry import Call, Identity, route
from autovibe.sim.routes.qemu_power import BOOT_S, PAUSE_S, SHUTDOWN_S, boot, halt
from autovibe.sim.routes.storage import ARCHIVE_RE, volume_path
from autovibe.sim.tasks import Phase, Task, TaskKind, task_kind

GLOBAL_LOCK = "/var/run/vzdump.lock"
PREPARE_S = 1.0  # per guest: checks, lock, config, snapshot/freeze
FINALIZE_S = 1.0  # per guest: rename the archive, notes, pruning
ARCHIVE_OVERHEAD = 4096  # VMA header and the guest config inside the archive
# compress parameter -> (archive extension, size of the archive per allocated byte read)
COMPRESSION = {
    "0": ("", 1.0),
    "1": (".lzo", 0.6),
    "lzo": (".lzo", 0.6),
    "gzip": (".gz", 0.45),
    "zstd": (".zst", 0.5),
}
# Parameters only root@pam may set (API2/VZDump.pm).
ROOT_ONLY = ("maxfiles", "prune-backups", "tmpdir", "dumpdir", "script", "bwlimit", "ionice")
# prune-backups keys in the order PVE applies them, with the period each keeps one backup of.
PRUNE_PERIODS: tuple[tuple[str, Callable[[int], str]], ...] = (
    ("keep-last", str),
    ("keep-hourly", lambda t: time.strftime("%H/%d/%m/%Y", time.gmtime(t))),
    ("keep-daily", lambda t: time.strftime("%d/%m/%Y", time.gmtime(t))),
    ("keep-weekly", lambda t: time.strftime("%V/%G", time.gmtime(t))),
    ("keep-monthly", lambda t: time.strftime("%m/%Y", time.gmtime(t))),
    ("keep-yearly", lambda t: time.strftime("%Y", time.gmtime(t))),
)
PRUNE_KEYS = ("keep-all", *(key for key, _ in PRUNE_PERIODS))


# ---- the API call ------------------------------------------------------------------------------
@route("POST", "/nodes/{node}/vzdump")
def vzdump(call: Call) -> str:
    p, cluster = call.params, call.cluster
    node = p["node"]
    identity = call.identity or Identity("root@pam")
    if p.get("stdout"):
        raise param_error({"stdout": "option is only allowed on the command line interface."})
    for key in ROOT_ONLY:  # root@pam itself: its API tokens are other users here (as for skiplock)
        if key in p and identity.authid != "root@pam":
            raise param_error({key: "Only root may set this option."})
    prune = _verify(p)
    if p.get("stop"):
        for task in list(cluster.tasks.tasks.values()):
            if task.running and task.type == "vzdump" and task.node == node:
                cluster.tasks.stop(cluster, task.upid)
    local = _included_guests(cluster, p)
    if not local and (p.get("stop") or not p.get("all")):
        return "OK"  # the guests live on other nodes (or nothing was asked): PVE's silent exit
    if "storage" in p and not _may(call, identity, f"/storage/{p['storage']}", "Datastore.AllocateSpace"):
        raise permission_error(f"/storage/{p['storage']}", "Datastore.AllocateSpace")
    wid = str(local[0]) if len(local) == 1 else ""
    known = [vmid for vmid in local if vmid in cluster.guests]
    denied = None
    if p.get("all"):  # guests without VM.Backup are skipped silently
        local = [v for v in local if v not in known or _may(call, identity, f"/vms/{v}", "VM.Backup")]
    else:
        refused = [v for v in known if not _may(call, identity, f"/vms/{v}", "VM.Backup")]
        denied = permission_error(f"/vms/{refused[0]}", "VM.Backup").message if refused else None
    args = {
        "vmids": local,
        "known": known,
        "denied": denied,
        "cmdline": _command_line(p),
        "storage": p.get("storage"),
        "dumpdir": p.get("dumpdir"),
        "tmpdir": p.get("tmpdir"),
        "script": p.get("script"),
        "mode": p.get("mode", "snapshot"),
        "compress": str(p.get("compress", "0")),
        "notes_template": p.get("notes-template"),
        "protected": bool(p.get("protected")),
        "prune": prune,
        "remove": bool(p.get("remove", True)) and "keep-all" not in prune,
        "lockwait": int(p.get("lockwait", 180)),
        "ionice": int(p.get("ionice", 7)),
        "bwlimit": int(p.get("bwlimit", 0)),
        "next": 0,
        "errors": 0,
        "current": None,
    }
    task = cluster.tasks.spawn(cluster, VZDUMP, node=node, wid=wid, user=identity.authid, args=args)
    return task.upid


def _may(call: Call, identity: Identity, path: str, priv: str) -> bool:
    return has_privileges(call.cluster.access, identity, path, [priv], pools=call.cluster.pools)


def _verify(p: dict[str, Any]) -> dict[str, int]:
    """PVE's verify_vzdump_parameters; returns the retention (``{"keep-all": 1}`` by default)."""
    for other in ("all", "exclude", "pool"):
        if p.get(other) and p.get("vmid"):
            raise param_error({other: "option conflicts with option 'vmid'"})
    if "prune-backups" in p and "maxfiles" in p:
        raise param_error({"prune-backups": "option conflicts with option 'maxfiles'"})
    if "\n" in p.get("notes-template", ""):
        raise param_error({"notes-template": "contains a line feed"})
    if "exclude" in p and not p.get("pool"):
        p["all"] = True
    if not (p.get("all") or p.get("stop") or p.get("pool")) and not p.get("vmid"):
        raise param_error({"vmid": "property is missing"})
    if "maxfiles" in p:
        return {"keep-last": int(p["maxfiles"])}
    return _parse_prune(p.get("prune-backups", "keep-all=1"))


def _parse_prune(text: str) -> dict[str, int]:
    keep: dict[str, int] = {}
    for part in (part for part in text.split(",") if part.strip()):
        key, _, value = part.partition("=")
        if key not in PRUNE_KEYS:
            raise param_error(
                {"prune-backups": f"invalid format - invalid key in comma-separated list property: {key}"}
            )
        if not value.isdigit():
            kind = "boolean" if key == "keep-all" else "integer"
            raise param_error(
                {"prune-backups": f"invalid format - format error\n{key}: type check ('{kind}') failed"}
            )
        keep[key] = int(value)
    if not keep.get("keep-all", 0):
        keep.pop("keep-all", None)
    return keep if keep and any(keep.values()) else {"keep-all": 1}


def _included_guests(cluster: Cluster, p: dict[str, Any]) -> list[int]:
    """PVE's get_included_guests for the job's node: its guests, plus IDs no guest has (they fail later,
    visibly); guests on other nodes are left out."""
    if p.get("pool"):
        vmids = [int(v) for v in cluster.pools.get(p["pool"], {}).get("vms", [])]
    elif p.get("vmid"):
        vmids = [int(v) for v in split_list(p["vmid"])]
    elif p.get("all"):
        excluded = {int(v) for v in split_list(p.get("exclude", ""))}
        vmids = [v for v in cluster.guests if v not in excluded]
    else:
        return []
    vmids.sort()
    return [v for v in vmids if v not in cluster.guests or cluster.guests[v].node == p["node"]]


def _command_line(p: dict[str, Any]) -> str:
    """The job's command line as the log's first line shows it."""
    words = ["vzdump", *split_list(p.get("vmid", ""))]
    for key in sorted(p):
        if key == "vmid":
            continue
        value = int(p[key]) if isinstance(p[key], bool) else p[key]
        if str(value) != "":
            words += [f"--{key}", shlex.quote(str(value))]
    return " ".join(words)


# ---- the worker --------------------------------------------------------------------------------
def _begin(cluster: Cluster, task: Task) -> list[Phase]:
    _check_target(cluster, task)
    if _other_jobs(cluster, task, include_waiting=True):
        if not task.args["lockwait"]:
            raise TaskError(f"can't acquire lock '{GLOBAL_LOCK}' (wait = 0)")
        task.log.append("INFO: trying to get global lock - waiting...")
        return [Phase("gate", task.args["lockwait"] * 60.0, step="lock")]
    return _start_job(cluster, task)


def _check_target(cluster: Cluster, task: Task) -> None:
    """PVE::VZDump->new: every problem with the target is collected, then the task fails at once."""
    args = task.args
    if args["storage"] and args["dumpdir"]:
        raise TaskError("cannot use options 'storage' and 'dumpdir' at the same time")
    errors = []
    if args["script"]:
        errors.append(f"The hook script '{args['script']}' is not executable.")
    if args["dumpdir"]:
        errors.append(f"dumpdir '{args['dumpdir']}' does not exist")
    else:
        sid = args["storage"] or "local"
        args["storage"] = sid
        storage = cluster.storages.get(sid)
        if storage is None:
            errors.append(f"could not activate storage '{sid}': storage '{sid}' does not exist")
            errors.append(f"could not get storage information for '{sid}': storage '{sid}' does not exist")
        elif "backup" not in storage.content:
            errors.append(
                f"could not get storage information for '{sid}': "
                f"can't use storage '{sid}' for backups - wrong content type"
            )
    if args["tmpdir"]:
        errors.append(f"tmpdir '{args['tmpdir']}' does not exist")
    if errors:
        raise TaskError("\n".join(errors))


def _other_jobs(cluster: Cluster, task: Task, *, include_waiting: bool) -> bool:
    """Whether another backup job on this node holds (or, with ``include_waiting``, queues for) the lock."""
    for other in cluster.tasks.tasks.values():
        if other is task or not other.running or other.type != "vzdump" or other.node != task.node:
            continue
        if include_waiting or not (other.phases and other.phases[0].kind == "gate"):
            return True
    return False


def _ready(cluster: Cluster, task: Task, name: str) -> bool:
    return not _other_jobs(cluster, task, include_waiting=False)


def _start_job(cluster: Cluster, task: Task) -> list[Phase]:
    task.log.append(f"INFO: starting new backup job: {task.args['cmdline']}")
    if task.args["denied"]:
        raise TaskError(task.args["denied"])
    return _next_guest(cluster, task)


def _next_guest(cluster: Cluster, task: Task) -> list[Phase]:
    """Start the next guest that can be backed up; the ones that cannot fail on the way."""
    args = task.args
    while args["next"] < len(args["vmids"]):
        vmid = args["vmids"][args["next"]]
        args["next"] += 1
        try:
            return _start_guest(cluster, task, vmid)
        except TaskError as exc:
            _guest_failed(cluster, task, vmid, exc.message)
    return []


def _start_guest(cluster: Cluster, task: Task, vmid: int) -> list[Phase]:
    args, now, log = task.args, cluster.tasks.time, task.log
    if vmid not in args["known"]:
        raise TaskError(f"unable to find VM '{vmid}'")
    current: dict[str, Any] = {"vmid": vmid, "started": now}
    args["current"] = current
    storage = cluster.storages[args["storage"]]
    _check_backup_limit(cluster, task, storage, vmid)
    log.append(f"INFO: Starting Backup of VM {vmid} (qemu)")
    log.append(f"INFO: Backup started at {_stamp(now)}")
    guest = cluster.guests.get(vmid)
    if guest is None or guest.node != task.node:
        raise TaskError(f"Configuration file 'nodes/{task.node}/qemu-server/{vmid}.conf' does not exist")
    running = guest.status == "running"
    log.append(f"INFO: status = {guest.status}")
    if guest.lock:
        raise TaskError(f"VM is locked ({guest.lock})")
    guest.config["lock"] = "backup"
    current["locked"] = True
    mode = args["mode"] if running else "stop"
    current["mode"], current["was_running"] = mode, running
    log.append(f"INFO: VM Name: {guest.name}")
    copies, read, disk_total = _disk_copies(cluster, task, guest, storage, log)
    log.append(f"INFO: backup mode: {mode}")
    if args["bwlimit"]:
        log.append(f"INFO: bandwidth limit: {args['bwlimit']} KB/s")
    log.append(f"INFO: ionice priority: {args['ionice']}")
    ext, ratio = COMPRESSION[args["compress"]]
    name = f"vzdump-qemu-{vmid}-{time.strftime('%Y_%m_%d-%H_%M_%S', time.gmtime(now))}.vma{ext}"
    size = int(read * ratio) + ARCHIVE_OVERHEAD
    current.update(archive=f"{storage.id}:backup/{name}", size=size, read=read, disk_total=disk_total)
    phases = _mode_phases(task, guest, mode, running)
    log.append(f"INFO: creating vzdump archive '{volume_path(storage, current['archive'])}'")
    partial = re.sub(r"\.[^.]+$", ".dat", current["archive"])
    if cluster.used_bytes(storage, task.node) + size > storage.total:
        raise TaskError("vma_queue_write: write error - No space left on device")
    cluster.volumes[partial] = Volume(
        partial, storage.id, task.node, vmid, size, f"vma{ext}", content="backup", used=size, ctime=int(now)
    )
    current["partial"] = partial
    if mode == "snapshot":
        if guest.config.get("agent", "0").startswith("1"):
            log.append("INFO: issuing guest-agent 'fs-freeze' command")
            log.append("INFO: issuing guest-agent 'fs-thaw' command")
        log.append(f"INFO: started backup task '{_job_uuid(task, vmid)}'")
    elif mode == "stop" and not running:
        log.append("INFO: starting kvm to execute backup task")
        log.append(f"INFO: started backup task '{_job_uuid(task, vmid)}'")
    return [*phases, *copies, Phase("wait", FINALIZE_S, step="archived")]


def _disk_copies(
    cluster: Cluster, task: Task, guest: Guest, storage: Storage, log: list[str]
) -> tuple[list[Phase], int, int]:
    """One copy per disk of its allocated bytes (a linked clone's include its base's) to the target."""
    target = storage.location(task.node)
    copies, read, disk_total = [], 0, 0
    for key, volid in sorted(guest.disks().items()):
        volume = cluster.volumes.get(volid)
        if volume is None:
            continue
        log.append(f"INFO: include disk '{key}' '{volid}' {format_size(volume.size)}")
        allocated, source = volume.used, volume
        while source.base is not None and source.base in cluster.volumes:
            source = cluster.volumes[source.base]
            allocated += source.used
        read, disk_total = read + allocated, disk_total + volume.size
        if allocated:
            src = cluster.storages[volume.storage].location(volume.node)
            copies.append(Phase("copy", float(allocated), sorted({src, target})))
    return copies, read, disk_total


def _mode_phases(task: Task, guest: Guest, mode: str, running: bool) -> list[Phase]:
    """What happens to a running guest before its data is read: nothing (snapshot), a short pause
    (suspend), or a shutdown and a fresh start (stop, for QEMU the guest runs again during the copy)."""
    if mode == "suspend":
        task.log.append("INFO: suspending guest")
        return [Phase("wait", PAUSE_S, step="suspended"), Phase("wait", PREPARE_S, step="resumed")]
    if mode == "stop" and running:
        task.log.append("INFO: stopping virtual guest")
        return [Phase("wait", SHUTDOWN_S, step="stopped"), Phase("wait", BOOT_S, step="restarted")]
    return [Phase("wait", PREPARE_S)]


def _step(cluster: Cluster, task: Task, name: str) -> list[Phase]:
    if name == "lock":
        if _other_jobs(cluster, task, include_waiting=False):
            raise TaskError(f"can't acquire lock '{GLOBAL_LOCK}' - got timeout")
        task.log.append("INFO: got global lock")
        return _start_job(cluster, task)
    current, now, log = task.args["current"], cluster.tasks.time, task.log
    guest = cluster.guests.get(current["vmid"])
    if name == "archived":
        return _archived(cluster, task)
    if guest is None:
        return []
    if name == "suspended":
        guest.qmpstatus, current["paused_at"] = "paused", now
        log.append(f"INFO: started backup task '{_job_uuid(task, guest.vmid)}'")
    elif name == "resumed":
        current.pop("paused_at", None)
        guest.qmpstatus = "running" if guest.status == "running" else guest.qmpstatus
        log.append("INFO: resuming VM again")
        log.append(f"INFO: guest is online again after {_delay(now - current['started'])} seconds")
    elif name == "stopped":
        halt(guest)
        current["restart"] = True
        log.append("INFO: starting kvm to execute backup task")
    elif name == "restarted":
        current.pop("restart", None)
        boot(cluster, guest, now)
        log.append(f"INFO: started backup task '{_job_uuid(task, guest.vmid)}'")
        log.append("INFO: resuming VM again")
        log.append(f"INFO: guest is online again after {_delay(now - current['started'])} seconds")
    return []


def _archived(cluster: Cluster, task: Task) -> list[Phase]:
    """The guest's data is written: rename the archive, add notes and protection, prune, unlock."""
    if task.injected_failure:
        raise TaskError(task.injected_failure)
    args, now, log = task.args, cluster.tasks.time, task.log
    current = args["current"]
    vmid = current["vmid"]
    if current["mode"] == "stop" and not current["was_running"]:
        log.append("INFO: stopping kvm after backup task")
    zero = current["disk_total"] - current["read"]
    if current["disk_total"]:
        log.append(
            f"INFO: backup is sparse: {_bytes(zero)} ({zero * 100 // current['disk_total']}%) total zero data"
        )
    seconds = max(1, int(now - current["started"]))
    log.append(f"INFO: transferred {_bytes(current['disk_total'])} in {seconds} seconds")
    volume = cluster.volumes.pop(current.pop("partial"))
    volume.volid = current["archive"]
    cluster.volumes[volume.volid] = volume
    log.append(f"INFO: archive file size: {_pve_size(volume.size)}")
    guest = cluster.guests.get(vmid)
    if args["notes_template"]:
        log.append("INFO: adding notes to backup")
        try:
            volume.notes = _notes(args["notes_template"], cluster, task, guest)
        except ValueError as exc:
            log.append(f"WARN: unable to add notes - {exc}")
    if args["protected"]:
        log.append("INFO: marking backup as protected")
        volume.protected = True
    if args["remove"]:
        _prune(cluster, task, cluster.storages[args["storage"]], vmid)
    if guest is not None and guest.lock == "backup":
        guest.config.pop("lock")
    current["locked"] = False
    log.append(f"INFO: Finished Backup of VM {vmid} ({_hms(now - current['started'])})")
    log.append(f"INFO: Backup finished at {_stamp(now)}")
    args["current"] = None
    return _next_guest(cluster, task)


def _guest_failed(cluster: Cluster, task: Task, vmid: int, message: str) -> None:
    """Clean up the guest (unlock, restart or resume it, drop the partial archive), then log the error."""
    _cleanup(cluster, task)
    task.log.append(f"ERROR: Backup of VM {vmid} failed - {message}")
    task.log.append(f"INFO: Failed at {_stamp(cluster.tasks.time)}")
    task.args["errors"] += 1
    task.args["current"] = None


def _cleanup(cluster: Cluster, task: Task) -> None:
    current = task.args["current"]
    if not current:
        return
    guest = cluster.guests.get(current["vmid"])
    if guest is not None:
        if current.get("locked") and guest.lock == "backup":
            guest.config.pop("lock")
        if "paused_at" in current and guest.status == "running":
            task.log.append("INFO: resume vm")
            guest.qmpstatus = "running"
        if current.get("restart") and guest.status != "running":
            task.log.append("INFO: restarting vm")
            boot(cluster, guest, cluster.tasks.time)
    if current.get("partial"):
        cluster.free_volume(current.pop("partial"))


def _finish(cluster: Cluster, task: Task) -> None:
    if task.args["errors"]:
        task.log.append("INFO: Backup job finished with errors")
        raise TaskError("job errors")
    task.log.append("INFO: Backup job finished successfully")


def _abort(cluster: Cluster, task: Task, message: str) -> None:
    """Interrupted or failed mid-guest: that guest is cleaned up and fails, and so does the job."""
    current = task.args.get("current")
    if current:
        _guest_failed(cluster, task, current["vmid"], message)
        task.log.append(f"ERROR: Backup job failed - {message}")


VZDUMP = task_kind(TaskKind("vzdump", "vzdump", _begin, _finish, _abort, step=_step, ready=_ready))


# ---- retention ---------------------------------------------------------------------------------
def _backups_of(cluster: Cluster, storage: Storage, node: str, vmid: int) -> list[Volume]:
    loc = storage.location(node)
    return [
        v
        for v in cluster.volumes.values()
        if v.content == "backup"
        and v.vmid == vmid
        and v.storage == storage.id
        and storage.location(v.node) == loc
        and ARCHIVE_RE.match(v.volid.split(":", 1)[1].removeprefix("backup/"))
    ]


def _check_backup_limit(cluster: Cluster, task: Task, storage: Storage, vmid: int) -> None:
    """With a retention but ``remove=0``, PVE refuses a backup that would exceed it."""
    limit = sum(task.args["prune"].values()) if "keep-all" not in task.args["prune"] else 0
    if not limit or task.args["remove"]:
        return
    count = sum(1 for v in _backups_of(cluster, storage, task.node, vmid) if not v.protected)
    if count >= limit:
        raise TaskError(
            f"There is a max backup limit of {limit} enforced by the target storage or the vzdump "
            "parameters. Either increase the limit or delete old backups."
        )


def _prune(cluster: Cluster, task: Task, storage: Storage, vmid: int) -> None:
    """PVE's prune_mark_backup_group: per keep-* option, newest first, keep one backup per period."""
    keep = task.args["prune"]
    task.log.append(
        "INFO: prune older backups with retention: " + ", ".join(f"{k}={v}" for k, v in sorted(keep.items()))
    )
    backups = sorted(_backups_of(cluster, storage, task.node, vmid), key=lambda v: v.ctime or 0, reverse=True)
    marks = {v.volid: "protected" for v in backups if v.protected}
    for option, period in PRUNE_PERIODS:
        count = keep.get(option, 0)
        if not count:
            continue
        kept = {period(v.ctime or 0) for v in backups if marks.get(v.volid) == "keep"}
        included: set[str] = set()
        for backup in backups:
            key = period(backup.ctime or 0)
            if backup.volid in marks or key in kept:
                continue
            if key in included:
                marks[backup.volid] = "remove"
                continue
            if len(included) >= count:
                break
            included.add(key)
            marks[backup.volid] = "keep"
    removed = [v.volid for v in backups if marks.get(v.volid, "remove") == "remove"]
    for volid in removed:
        task.log.append(f"INFO: removing backup '{volid}'")
        cluster.free_volume(volid)
    extra = " not covered by keep-retention policy" if removed else ""
    task.log.append(f"INFO: pruned {len(removed)} backup(s){extra}")


# ---- text helpers ------------------------------------------------------------------------------
def _notes(template: str, cluster: Cluster, task: Task, guest: Guest | None) -> str:
    """PVE's generate_notes: ``{{cluster}}``, ``{{guestname}}``, ``{{node}}``, ``{{vmid}}``; ``\\n``."""
    values = {
        "cluster": CLUSTER_NAME,
        "guestname": guest.name if guest else "",
        "node": task.node,
        "vmid": str(task.args["current"]["vmid"]),
    }

    def unescape(match: re.Match[str]) -> str:
        char = match.group(1)
        if char not in ("\\", "n"):
            raise ValueError(f"unexpected escape character '{char}'")
        return "\\" if char == "\\" else "\n"

    text = re.sub(r"\\(.)", unescape, template)
    text = re.sub(r"\{\{(cluster|guestname|node|vmid)\}\}", lambda m: values[m.group(1)], text)
    unknown = re.search(r"\{\{(\S+)\}\}", text)
    if unknown:
        raise ValueError(f"unexpected variable name '{unknown.group(1)}'")
    return text


def _job_uuid(task: Task, vmid: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{task.upid}/{vmid}"))


def _stamp(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _delay(seconds: float) -> str:
    return "<1" if seconds < 1 else str(int(seconds))


def _bytes(size: int) -> str:
    """PVE::Format::render_bytes: ``20.00 GiB``."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"


def _pve_size(size: int) -> str:
    """VZDump.pm format_size: ``512KB``, ``300MB``, ``2.00GB``."""
    if size < 1024**2:
        return f"{size // 1024}KB"
    if size < 1024**3:
        return f"{size // 1024**2}MB"
    if size < 1024**4:
        return f"{size / 1024**3:.2f}GB"
    return f"{size / 1024**4:.2f}TB"
