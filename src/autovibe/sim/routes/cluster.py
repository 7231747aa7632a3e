"""``/version`` and ``/cluster/*``: what every client reads first."""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import CLUSTER_NAME, PVE_VERSION
from autovibe.sim.errors import param_error
from autovibe.sim.privileges import effective_privileges
from autovibe.sim.registry import Call, route
from autovibe.sim.views import guest_row, node_row, storage_row, task_entry


@route("GET", "/version")
def version(call: Call) -> dict[str, Any]:
    return dict(PVE_VERSION)


@route("GET", "/cluster/resources")
def resources(call: Call) -> list[dict[str, Any]]:
    """Every node, guest, storage and pool the caller may see; ``type`` filters (vm = qemu + lxc)."""
    cluster, kind = call.cluster, call.params.get("type")
    rows: list[dict[str, Any]] = []
    if kind in (None, "node"):
        rows += [node_row(cluster, n, call.now) for n in cluster.nodes.values()]
    if kind in (None, "vm"):
        rows += [
            guest_row(cluster, g, call.now) for g in sorted(cluster.guests.values(), key=lambda g: g.vmid)
        ]
    if kind in (None, "storage"):
        rows += [
            storage_row(cluster, s, n) for n in cluster.nodes.values() for s in cluster.storages.values()
        ]
    if kind is None:
        rows += [{"id": f"/pool/{p}", "type": "pool", "pool": p} for p in sorted(cluster.pools)]
    return [r for r in rows if _visible(call, r)]


def _visible(call: Call, row: dict[str, Any]) -> bool:
    """PVE filters rows by the audit privilege on each object's ACL path."""
    if call.identity is None:
        return False
    path, priv = {
        "node": (f"/nodes/{row.get('node')}", "Sys.Audit"),
        "qemu": (f"/vms/{row.get('vmid')}", "VM.Audit"),
        "storage": (f"/storage/{row.get('storage')}", "Datastore.Audit"),
        "pool": (f"/pool/{row.get('pool')}", "Pool.Audit"),
    }[row["type"]]
    return priv in effective_privileges(call.cluster.access, call.identity, path, pools=call.cluster.pools)


@route("GET", "/cluster/nextid")
def nextid(call: Call) -> str:
    """The lowest free VMID, as a JSON *string* like PVE sends it. It reserves nothing (SEMANTICS §7)."""
    wanted = call.params.get("vmid")
    if wanted is not None:
        if int(wanted) in call.cluster.guests:
            raise param_error({"vmid": f"VM {wanted} already exists"})
        return str(wanted)
    return str(call.cluster.next_free_vmid())


@route("GET", "/cluster/status")
def status(call: Call) -> list[dict[str, Any]]:
    nodes = list(call.cluster.nodes.values())
    entries: list[dict[str, Any]] = [
        {
            "id": "cluster",
            "type": "cluster",
            "name": CLUSTER_NAME,
            "nodes": len(nodes),
            "quorate": 1,
            "version": 3,
        }
    ]
    for index, node in enumerate(nodes, start=1):
        entries.append(
            {
                "id": f"node/{node.name}",
                "type": "node",
                "name": node.name,
                "nodeid": index,
                "ip": node.ip,
                "online": 1 if node.online else 0,
                "local": 1 if index == 1 else 0,
                "level": "",
            }
        )
    return entries


@route("GET", "/cluster/tasks")
def tasks(call: Call) -> list[dict[str, Any]]:
    """Recent tasks of the whole cluster, newest first; only your own without Sys.Audit on /."""
    see_all = call.identity is not None and "Sys.Audit" in effective_privileges(
        call.cluster.access, call.identity, "/"
    )
    out = []
    for task in sorted(call.cluster.tasks.tasks.values(), key=lambda t: t.starttime, reverse=True):
        if not see_all and not _owns(call, task.user):
            continue
        entry = task_entry(task)
        if not task.running:
            entry["endtime"] = task.endtime
            entry["status"] = task.exitstatus
        out.append(entry)
    return out


def _owns(call: Call, task_user: str) -> bool:
    """A token sees its own tasks; a user sees its own and its tokens' (SEMANTICS §2)."""
    if call.identity is None:
        return False
    if call.identity.tokenid:
        return task_user == call.identity.authid
    return task_user.split("!")[0] == call.identity.userid
