"""Each node's ``/etc/network/interfaces``, as ``GET /nodes/{node}/network`` lists it.

Every node has the same three interfaces: the physical NIC ``eno1``; ``vmbr0``, the management bridge
on ``eno1`` carrying the node's address (``Node.ip``/24, gateway ``.1`` of that network); and
``vmbr1``, an isolated bridge with no port and no host address, for guests that must reach nothing
but each other. The layout is derived from the node, not stored: there is no API to change it.
"""

from __future__ import annotations

from typing import Any

from autovibe.sim.model import Node

MANAGEMENT_BRIDGE = "vmbr0"
ISOLATED_BRIDGE = "vmbr1"
PHYSICAL_NIC = "eno1"
PREFIX_LENGTH = 24


def interfaces(node: Node) -> dict[str, dict[str, Any]]:
    """iface -> its entry, with the keys pve-manager's parser gives (``iface`` included)."""
    gateway = ".".join([*node.ip.split(".")[:3], "1"])
    common = {"families": ["inet"], "method6": "manual", "active": 1, "autostart": 1}
    return {
        PHYSICAL_NIC: {
            "iface": PHYSICAL_NIC,
            "type": "eth",
            "method": "manual",
            "families": ["inet"],
            "method6": "manual",
            "exists": 1,
            "active": 1,
            "priority": 3,
        },
        MANAGEMENT_BRIDGE: {
            **common,
            "iface": MANAGEMENT_BRIDGE,
            "type": "bridge",
            "method": "static",
            "address": node.ip,
            "netmask": str(PREFIX_LENGTH),
            "cidr": f"{node.ip}/{PREFIX_LENGTH}",
            "gateway": gateway,
            "bridge_ports": PHYSICAL_NIC,
            "bridge_stp": "off",
            "bridge_fd": "0",
            "priority": 4,
        },
        ISOLATED_BRIDGE: {
            **common,
            "iface": ISOLATED_BRIDGE,
            "type": "bridge",
            "method": "manual",
            "bridge_ports": "none",
            "bridge_stp": "off",
            "bridge_fd": "0",
            "comments": "isolated guest network (no uplink, no host address)\n",
            "priority": 5,
        },
    }


def bridges(node: Node) -> set[str]:
    return {name for name, entry in interfaces(node).items() if entry["type"] in ("bridge", "OVSBridge")}
