"""Storages: the datacenter list, a node's view with capacity, and volume content listings."""

from __future__ import annotations

from typing import Any

from autovibe.sim.model import Storage
from autovibe.sim.registry import Call, route


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
    """Volumes on this storage as seen from ``node`` (``vmid`` filters), incl. RAM-state volumes."""
    p = call.params
    storage = call.cluster.storage(p["storage"], p["node"])
    loc = storage.location(p["node"])
    rows = []
    for vol in sorted(call.cluster.volumes.values(), key=lambda v: v.volid):
        if storage.location(vol.node) != loc or vol.storage != storage.id:
            continue
        if "vmid" in p and vol.vmid != int(p["vmid"]):
            continue
        row: dict[str, Any] = {
            "volid": vol.volid,
            "vmid": vol.vmid,
            "size": vol.size,
            "used": vol.used,
            "format": vol.format,
            "content": "images",
            "ctime": int(call.now),
        }
        if vol.base:
            row["parent"] = vol.base.split(":", 1)[1]
        rows.append(row)
    if "content" in p:
        rows = [r for r in rows if r["content"] == p["content"]]
    return rows
