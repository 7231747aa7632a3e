"""Resource pools (PVE 8: ``/pools?poolid=``; the ``/pools/{poolid}`` forms are deprecated but served).

Pools matter beyond grouping: roles granted on ``/pool/<id>`` reach its member guests and storages.
Wording follows SEMANTICS §8.
"""

from __future__ import annotations

from typing import Any

from autovibe.sim.errors import param_error, runtime_error
from autovibe.sim.guests import split_list
from autovibe.sim.registry import Call, route


def _pool(call: Call) -> dict[str, Any]:
    poolid = call.params["poolid"]
    if poolid not in call.cluster.pools:
        raise runtime_error(f"pool '{poolid}' does not exist")
    return call.cluster.pools[poolid]


def _members(call: Call, pool: dict[str, Any], kind: str | None) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = []
    if kind in (None, "qemu"):
        for vmid in pool.get("vms", []):
            guest = call.cluster.guests.get(vmid)
            if guest is not None:
                members.append(
                    {
                        "id": f"qemu/{vmid}",
                        "type": "qemu",
                        "vmid": vmid,
                        "node": guest.node,
                        "name": guest.name,
                    }
                )
    if kind in (None, "storage"):
        for storage in pool.get("storage", []):
            for node in call.cluster.nodes:
                members.append(
                    {"id": f"storage/{node}/{storage}", "type": "storage", "node": node, "storage": storage}
                )
    return members


@route("GET", "/pools")
def list_pools(call: Call) -> list[dict[str, Any]]:
    wanted = call.params.get("poolid")
    out = []
    for poolid, pool in sorted(call.cluster.pools.items()):
        if wanted is not None and poolid != wanted:
            continue
        entry: dict[str, Any] = {"poolid": poolid}
        if pool.get("comment"):
            entry["comment"] = pool["comment"]
        if wanted is not None:
            entry["members"] = _members(call, pool, call.params.get("type"))
        out.append(entry)
    if wanted is not None and not out:
        raise runtime_error(f"pool '{wanted}' does not exist")
    return out


@route("POST", "/pools")
def create_pool(call: Call) -> None:
    poolid = call.params["poolid"]
    if poolid in call.cluster.pools:
        raise runtime_error(f"pool '{poolid}' already exists")
    call.cluster.pools[poolid] = {"comment": call.params.get("comment", ""), "vms": [], "storage": []}


def _update(call: Call) -> None:
    pool, p = _pool(call), call.params
    if "comment" in p:
        pool["comment"] = p["comment"]
    vms = [int(v) for v in split_list(p.get("vms"))]
    for vmid in vms:
        if vmid not in call.cluster.guests:
            raise param_error({"vms": f"no such VMID '{vmid}'"})
    if p.get("delete"):
        pool["vms"] = [v for v in pool.get("vms", []) if v not in vms]
        pool["storage"] = [s for s in pool.get("storage", []) if s not in split_list(p.get("storage"))]
        return
    for vmid in vms:
        _add_vm(call, pool, vmid, allow_move=bool(p.get("allow-move")))
    for storage in split_list(p.get("storage")):
        if storage not in pool.setdefault("storage", []):
            pool["storage"].append(storage)


def _add_vm(call: Call, pool: dict[str, Any], vmid: int, *, allow_move: bool) -> None:
    if vmid in pool.setdefault("vms", []):
        raise runtime_error(f"VM {vmid} is already a pool member")
    for other_id, other in call.cluster.pools.items():
        if vmid in other.get("vms", []):
            if not allow_move:
                raise runtime_error(
                    f"VM {vmid} belongs already to pool '{other_id}' and 'allow-move' is not set"
                )
            other["vms"].remove(vmid)
    pool["vms"].append(vmid)


def _delete(call: Call) -> None:
    pool = _pool(call)
    if pool.get("vms"):
        raise runtime_error(f"pool '{call.params['poolid']}' is not empty (contains VM {pool['vms'][0]})")
    del call.cluster.pools[call.params["poolid"]]


route("PUT", "/pools")(_update)
route("PUT", "/pools/{poolid}")(_update)
route("DELETE", "/pools")(_delete)
route("DELETE", "/pools/{poolid}")(_delete)


@route("GET", "/pools/{poolid}")
def get_pool(call: Call) -> dict[str, Any]:
    pool = _pool(call)
    return {"comment": pool.get("comment", ""), "members": _members(call, pool, call.params.get("type"))}
