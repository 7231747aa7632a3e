"""``/nodes/{node}/tasks``: task lists, status, log, and stopping a task."""

from __future__ import annotations

import re
from typing import Any

from autovibe.sim.errors import param_error
from autovibe.sim.privileges import effective_privileges
from autovibe.sim.registry import Call, Reply, route
from autovibe.sim.tasks import Task
from autovibe.sim.views import task_entry

# pve-common Tools.pm upid_decode: 8 hex pid, 8-9 hex pstart, 8 hex starttime, no ':' in the rest.
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)


def _task(call: Call) -> Task:
    upid = call.params["upid"]
    if not UPID_RE.match(upid):
        raise param_error({"upid": "unable to parse worker upid"})
    task = call.cluster.tasks.tasks.get(upid)
    if task is None or task.node != call.params["node"]:
        raise param_error({"upid": "no such task"})
    return task


def _may_see(call: Call, task: Task) -> bool:
    identity = call.identity
    if identity is None:
        return False
    if identity.tokenid:
        return task.user == identity.authid
    if task.user.split("!")[0] == identity.userid:
        return True
    return "Sys.Audit" in effective_privileges(
        call.cluster.access, identity, f"/nodes/{task.node}", pools=call.cluster.pools
    )


@route("GET", "/nodes/{node}/tasks/{upid}")
def task_index(call: Call) -> list[dict[str, str]]:
    _task(call)
    return [{"name": "log"}, {"name": "status"}]


@route("GET", "/nodes/{node}/tasks/{upid}/status")
def task_status(call: Call) -> dict[str, Any]:
    task = _task(call)
    entry = {**task_entry(task), "status": task.status}
    if not task.running:
        entry["exitstatus"] = task.exitstatus
    return entry


@route("GET", "/nodes/{node}/tasks/{upid}/log")
def task_log(call: Call) -> Reply:
    """Lines ``{n, t}`` numbered from 1; ``total`` in the envelope (SEMANTICS §3)."""
    task = _task(call)
    start, limit = int(call.params.get("start", 0)), int(call.params.get("limit", 50))
    lines = task.log or ["no content"]
    if call.params.get("download"):
        start, limit = 0, len(lines)
    chosen = [{"n": i + 1, "t": text} for i, text in enumerate(lines)][start : start + limit]
    return Reply(chosen, total=len(lines))


@route("DELETE", "/nodes/{node}/tasks/{upid}")
def stop_task(call: Call) -> None:
    task = _task(call)
    call.cluster.tasks.stop(call.cluster, task.upid)


@route("GET", "/nodes/{node}/tasks")
def list_tasks(call: Call) -> Reply:
    """Finished tasks unless ``source=active|all`` (the default ``archive`` hides running ones)."""
    p = call.params
    source = p.get("source", "archive")
    chosen = []
    for task in sorted(call.cluster.tasks.tasks.values(), key=lambda t: (t.starttime, t.upid), reverse=True):
        if task.node != p["node"] or not _may_see(call, task) or not _matches(task, p, source):
            continue
        entry = task_entry(task)
        if task.running:
            entry["status"] = "RUNNING"
        else:
            entry["endtime"] = task.endtime
            entry["status"] = task.exitstatus
        chosen.append(entry)
    start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
    return Reply(chosen[start : start + limit], total=len(chosen))


def _matches(task: Task, p: dict[str, Any], source: str) -> bool:
    if (source == "archive" and task.running) or (source == "active" and not task.running):
        return False
    failed = not task.running and task.exitstatus != "OK"
    return not (
        ("vmid" in p and task.id != str(p["vmid"]))
        or ("typefilter" in p and task.type != p["typefilter"])
        or ("userfilter" in p and str(p["userfilter"]) not in task.user)
        or ("since" in p and task.starttime < int(p["since"]))
        or ("until" in p and task.starttime > int(p["until"]))
        or (p.get("errors") and not failed)
        or ("statusfilter" in p and _status_class(task) not in str(p["statusfilter"]).split(","))
    )


def _status_class(task: Task) -> str:
    if task.running:
        return "unknown"
    if task.exitstatus == "OK":
        return "ok"
    if (task.exitstatus or "").startswith("WARNINGS"):
        return "warning"
    return "error"
