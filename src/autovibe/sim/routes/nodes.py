"""``/nodes`` and a node's own status."""

from __future__ import annotations

from typing import Any

from autovibe.sim.cluster import PVE_VERSION
from autovibe.sim.registry import Call, route
from autovibe.sim.views import node_row, node_usage


@route("GET", "/nodes")
def list_nodes(call: Call) -> list[dict[str, Any]]:
    return [
        {**node_row(call.cluster, node, call.now), "ssl_fingerprint": _fake_fingerprint(node.name)}
        for node in call.cluster.nodes.values()
    ]


def _fake_fingerprint(name: str) -> str:
    digest = (name.encode() * 32)[:32]
    return ":".join(f"{b:02X}" for b in digest)


@route("GET", "/nodes/{node}")
def node_index(call: Call) -> list[dict[str, str]]:
    names = ("qemu", "storage", "tasks", "status", "time", "version", "network", "firewall")
    return [{"name": n} for n in names]


@route("GET", "/nodes/{node}/status")
def node_status(call: Call) -> dict[str, Any]:
    node = call.cluster.node(call.params["node"])
    usage = node_usage(call.cluster, node, call.now)
    load = round(usage["cpu"] * node.cpus, 2)
    return {
        "cpu": usage["cpu"],
        "wait": 0.0,
        "uptime": usage["uptime"],
        "loadavg": [str(load), str(load), str(load)],
        "kversion": "Linux 6.8.12-9-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9",
        "pveversion": f"pve-manager/{PVE_VERSION['version']}/{PVE_VERSION['repoid']}",
        "cpuinfo": {
            "cpus": node.cpus,
            "cores": node.cpus // 2,
            "sockets": 1,
            "model": "Simulated CPU @ 3.00GHz",
            "mhz": "3000.000",
            "hvm": "1",
            "user_hz": 100,
            "flags": "",
        },
        "memory": {"total": node.memory, "used": usage["mem"], "free": node.memory - usage["mem"]},
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {
            "total": usage["maxdisk"],
            "used": usage["disk"],
            "free": usage["maxdisk"] - usage["disk"],
            "avail": usage["maxdisk"] - usage["disk"],
        },
        "ksm": {"shared": 0},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "current-kernel": {"sysname": "Linux", "release": "6.8.12-9-pve", "machine": "x86_64", "version": ""},
    }


@route("GET", "/nodes/{node}/time")
def node_time(call: Call) -> dict[str, Any]:
    """The node's clock is the simulated clock; ``localtime`` is UTC here (timezone ``UTC``)."""
    now = int(call.now)
    return {"time": now, "localtime": now, "timezone": "UTC"}


@route("GET", "/nodes/{node}/version")
def node_version(call: Call) -> dict[str, Any]:
    return dict(PVE_VERSION)
