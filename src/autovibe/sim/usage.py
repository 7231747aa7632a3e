"""Deterministic, evolving usage counters of running guests.

Each guest gets a steady personality from its vmid (how busy, how chatty) and a slow wave on top, so
numbers move between reads but the same (vmid, boot time, now) always gives the same answer. Rates are
integrated exactly, so cumulative counters (netin, diskwrite, ...) only grow during a boot and restart
from zero on the next one, as a real VM's do.
"""

from __future__ import annotations

import math

from autovibe.sim.model import Guest

PERIOD_S = 600.0  # one wave every ten simulated minutes


def _personality(vmid: int, salt: int) -> float:
    """A stable number in [0, 1) per (vmid, salt)."""
    return ((vmid * 2654435761 + salt * 40503) % 1000) / 1000.0


def _wave(vmid: int, salt: int, t: float) -> float:
    return math.sin(2 * math.pi * t / PERIOD_S + 6.283 * _personality(vmid, salt + 7))


def _integral(vmid: int, salt: int, rate: float, uptime: float) -> int:
    """∫0^uptime rate * (1 + 0.5 wave(t)) dt, closed form: never decreasing in uptime."""
    omega = 2 * math.pi / PERIOD_S
    phase = 6.283 * _personality(vmid, salt + 7)
    wobble = 0.5 / omega * (math.cos(phase) - math.cos(omega * uptime + phase))
    return int(rate * (uptime + wobble))


def guest_usage(guest: Guest, now: float) -> dict[str, float | int]:
    """cpu (fraction of maxcpu), mem, uptime and cumulative I/O counters at simulated time ``now``."""
    if guest.status != "running" or guest.started_at is None:
        return {"cpu": 0, "mem": 0, "uptime": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0}
    uptime = max(0.0, now - guest.started_at)
    busy = 0.02 + 0.4 * _personality(guest.vmid, 1)
    cpu = 0.0 if guest.qmpstatus == "paused" else busy * (1 + 0.5 * _wave(guest.vmid, 1, uptime))
    mem_share = 0.3 + 0.4 * _personality(guest.vmid, 2) + 0.05 * _wave(guest.vmid, 2, uptime)
    net_rate = 2_000 + 200_000 * _personality(guest.vmid, 3)  # bytes/s
    disk_rate = 50_000 + 2_000_000 * _personality(guest.vmid, 4)
    return {
        "cpu": round(min(1.0, cpu), 4),
        "mem": int(guest.memory * min(0.95, mem_share)),
        "uptime": int(uptime),
        "netin": _integral(guest.vmid, 3, net_rate, uptime),
        "netout": _integral(guest.vmid, 5, net_rate * 0.6, uptime),
        "diskread": _integral(guest.vmid, 4, disk_rate, uptime),
        "diskwrite": _integral(guest.vmid, 6, disk_rate * 0.7, uptime),
    }
