"""``/nodes/{node}/network``: the node's interfaces (``network.py``), read-only."""

from __future__ import annotations

from typing import Any

from autovibe.sim.errors import param_error, permission_error
from autovibe.sim.network import interfaces
from autovibe.sim.privileges import effective_privileges
from autovibe.sim.registry import Call, route

_BRIDGE_TYPES = ("bridge", "OVSBridge")
_SDN_PRIVS = ("SDN.Use", "SDN.Audit", "SDN.Allocate")


@route("GET", "/nodes/{node}/network")
def list_interfaces(call: Call) -> list[dict[str, Any]]:
    """All interfaces (``type`` filters; ``any_bridge``/``any_local_bridge``: Linux and OVS bridges).

    Without Sys.Audit on the node a caller sees only the bridges it may use (SDN.Use, SDN.Audit or
    SDN.Allocate on ``/sdn/zones/localnetwork/<bridge>``), and only when asking for bridges.
    """
    node = call.cluster.node(call.params["node"])
    wanted = call.params.get("type")
    rows = [dict(entry) for _, entry in sorted(interfaces(node).items())]
    if wanted in ("any_bridge", "any_local_bridge"):
        rows = [row for row in rows if row["type"] in _BRIDGE_TYPES]
    elif wanted is not None:
        rows = [row for row in rows if row["type"] == wanted]
    if _held(call, f"/nodes/{node.name}", ("Sys.Audit",)):
        return rows
    if wanted not in ("bridge", "any_bridge", "any_local_bridge"):
        raise permission_error(f"/nodes/{node.name}", "Sys.Audit")
    return [row for row in rows if _held(call, f"/sdn/zones/localnetwork/{row['iface']}", _SDN_PRIVS)]


def _held(call: Call, path: str, privs: tuple[str, ...]) -> bool:
    if call.identity is None:
        return False
    held = effective_privileges(call.cluster.access, call.identity, path, pools=call.cluster.pools)
    return any(priv in held for priv in privs)


@route("GET", "/nodes/{node}/network/{iface}")
def read_interface(call: Call) -> dict[str, Any]:
    found = interfaces(call.cluster.node(call.params["node"])).get(call.params["iface"])
    if found is None:
        raise param_error({"iface": "interface does not exist"})
    return {key: value for key, value in found.items() if key != "iface"}
