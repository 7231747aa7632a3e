"""Deterministic, evolving usage of running guests, shaped by a load profile.

A running guest follows one of five *load profiles*. Its usage is a pure function of (profile, vmid,
``t``), where ``t`` is the number of seconds since the profile took effect: the uptime, unless the
profile was switched during this boot. Rates are integrated in closed form, so cumulative counters
(netin, netout, diskread, diskwrite) are exact integrals: zero at boot, never decreasing within a boot,
zero again on the next boot, as a real VM's are.

Which profile: the one assigned by ``/_sim/load`` (or ``Cluster.set_load``), else the first
``load-<profile>`` tag of the guest (config ``tags``, ``;``-separated), else ``auto``. A change of the
assignment or of the tags of a running guest takes effect at once, piecewise: the guest records (the
time of the change ``at``, its counters so far ``base``) and integrates the new profile from there, so
``counter(now) = base + counters(profile, vmid, now - at)``. A fresh boot starts with ``at`` = boot
time and ``base`` = 0.

Formulas (``t`` in seconds; rates in bytes/s; cpu and mem as fractions of maxcpu and maxmem)::

    P = 600                                  # wave and burst period, ten simulated minutes
    w = 2*pi / P
    pers(vmid, salt) = ((vmid*2654435761 + salt*40503) % 1000) / 1000      # in [0, 1)
    phi(vmid, salt)  = 6.283 * pers(vmid, salt + 7)
    wave(vmid, salt, t) = sin(w*t + phi(vmid, salt))

    # every byte counter c with base rate R (table below) and salt s, in every profile but runaway:
    rate_c(t)    = R * (1 + 0.5*wave(vmid, s, t))
    counter_c(t) = R * (t + 0.5/w * (cos(phi(vmid, s)) - cos(w*t + phi(vmid, s))))
    # salts: netin 3, netout 5, diskread 4, diskwrite 6

    profile  cpu(t)                                 mem(t)
    auto     b*(1 + 0.5*wave(1))                    0.3 + 0.4*pers(2) + 0.05*wave(2)
    idle     0.015 + 0.005*wave(1)                  0.20
    steady   0.35 + 0.05*wave(1)                    0.50 + 0.02*wave(2)
    spiky    0.10 + 0.02*wave(1),                   0.50 + 0.10*wave(2)
             0.95 + 0.04*wave(1) during a burst
    runaway  1.0                                    min(0.95, 0.30 + 0.65*t/P)

    profile  R netin   R netout   R diskread   R diskwrite
    auto     n         0.6*n      d            0.7*d
    idle     500       300        1_000        4_000
    steady   1e6       5e5        2e6          1e6
    spiky    2e5       1e5        5e5          3e5          plus, during a burst, a flat extra_c of
                                                           1e7 / 5e6 / 2e7 / 3e7
    runaway  5e7       2e7        1e7          1e8          flat: no wave

    # auto: b = 0.02 + 0.4*pers(1), n = 2000 + 200000*pers(3), d = 50000 + 2000000*pers(4).
    # mem is capped at 0.95 and cpu at 1.0 everywhere.
    # spiky bursts: 60 s at the end of every period, shifted per vmid:
    burst(t)     = ((t + 60*(vmid % 10)) mod P) >= P - 60
    B(t)         = F(t + 60*(vmid % 10)) - F(60*(vmid % 10))      # burst seconds in [0, t]
    F(x)         = 60*floor(x/P) + max(0, (x mod P) - (P - 60))
    counter_c(t) = (wavy integral above) + extra_c * B(t)
    # runaway: counter_c(t) = R * t.

The API shows ``cpu`` rounded to 4 places (0 while paused; counters keep counting), ``mem`` as
``int(maxmem * min(0.95, mem))``, counters as ``int(base + counter(t))``. ``rates()`` and ``counters()``
below are these formulas, for tests that want the truth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from autovibe.sim.model import Guest

PERIOD_S = 600.0  # one wave every ten simulated minutes
PROFILES = ("auto", "idle", "steady", "spiky", "runaway")
COUNTERS = ("netin", "netout", "diskread", "diskwrite")
_SALTS = {"netin": 3, "netout": 5, "diskread": 4, "diskwrite": 6}
_OMEGA = 2 * math.pi / PERIOD_S
MEM_CAP = 0.95

# Base rates (bytes/s) of the wavy counters per profile, in COUNTERS order; auto's depend on the vmid.
_BASE_RATES = {
    "idle": (500.0, 300.0, 1_000.0, 4_000.0),
    "steady": (1_000_000.0, 500_000.0, 2_000_000.0, 1_000_000.0),
    "spiky": (200_000.0, 100_000.0, 500_000.0, 300_000.0),
}
SPIKY_BURST_S = 60.0
SPIKY_BURST_EXTRA = (10_000_000.0, 5_000_000.0, 20_000_000.0, 30_000_000.0)
RUNAWAY_RATES = (50_000_000.0, 20_000_000.0, 10_000_000.0, 100_000_000.0)
RUNAWAY_MEM_START, RUNAWAY_RAMP_S = 0.30, PERIOD_S

_TAG_SPLIT = re.compile(r"[;,\s]+")


def _personality(vmid: int, salt: int) -> float:
    """A stable number in [0, 1) per (vmid, salt)."""
    return ((vmid * 2654435761 + salt * 40503) % 1000) / 1000.0


def _phase(vmid: int, salt: int) -> float:
    return 6.283 * _personality(vmid, salt + 7)


def _wave(vmid: int, salt: int, t: float) -> float:
    return math.sin(2 * math.pi * t / PERIOD_S + _phase(vmid, salt))


def _wavy_integral(vmid: int, salt: int, rate: float, t: float) -> float:
    """∫0^t rate * (1 + 0.5 wave(s)) ds, closed form: never decreasing in t, 0 at t = 0."""
    phase = _phase(vmid, salt)
    wobble = 0.5 / _OMEGA * (math.cos(phase) - math.cos(_OMEGA * t + phase))
    return rate * (t + wobble)


def _burst_offset(vmid: int) -> float:
    return SPIKY_BURST_S * (vmid % 10)


def in_burst(vmid: int, t: float) -> bool:
    """Whether a ``spiky`` guest is in one of its 60 s bursts ``t`` seconds into the profile."""
    return (t + _burst_offset(vmid)) % PERIOD_S >= PERIOD_S - SPIKY_BURST_S


def _burst_seconds_from_zero(x: float) -> float:
    return SPIKY_BURST_S * math.floor(x / PERIOD_S) + max(0.0, x % PERIOD_S - (PERIOD_S - SPIKY_BURST_S))


def burst_seconds(vmid: int, t: float) -> float:
    """Seconds a ``spiky`` guest spent bursting in [0, t]."""
    offset = _burst_offset(vmid)
    return _burst_seconds_from_zero(t + offset) - _burst_seconds_from_zero(offset)


def _auto_rates(vmid: int) -> tuple[float, float, float, float]:
    net = 2_000 + 200_000 * _personality(vmid, 3)
    disk = 50_000 + 2_000_000 * _personality(vmid, 4)
    return (net, net * 0.6, disk, disk * 0.7)


def check_profile(profile: object) -> str:
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown load profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def rates(profile: str, vmid: int, t: float) -> dict[str, float]:
    """cpu and mem (fractions of maxcpu and maxmem, mem capped at 0.95) and byte rates, ``t`` s in."""
    check_profile(profile)
    if profile == "runaway":
        mem = min(MEM_CAP, RUNAWAY_MEM_START + (MEM_CAP - RUNAWAY_MEM_START) * t / RUNAWAY_RAMP_S)
        return {"cpu": 1.0, "mem": mem, **dict(zip(COUNTERS, RUNAWAY_RATES, strict=True))}
    if profile == "auto":
        busy = 0.02 + 0.4 * _personality(vmid, 1)
        cpu = busy * (1 + 0.5 * _wave(vmid, 1, t))
        mem = 0.3 + 0.4 * _personality(vmid, 2) + 0.05 * _wave(vmid, 2, t)
    elif profile == "idle":
        cpu, mem = 0.015 + 0.005 * _wave(vmid, 1, t), 0.20
    elif profile == "steady":
        cpu, mem = 0.35 + 0.05 * _wave(vmid, 1, t), 0.50 + 0.02 * _wave(vmid, 2, t)
    else:  # spiky
        bursting = in_burst(vmid, t)
        cpu = (0.95 + 0.04 * _wave(vmid, 1, t)) if bursting else (0.10 + 0.02 * _wave(vmid, 1, t))
        mem = 0.50 + 0.10 * _wave(vmid, 2, t)
    base = _auto_rates(vmid) if profile == "auto" else _BASE_RATES[profile]
    extra = SPIKY_BURST_EXTRA if profile == "spiky" and in_burst(vmid, t) else (0.0, 0.0, 0.0, 0.0)
    out = {"cpu": min(1.0, cpu), "mem": min(MEM_CAP, mem)}
    for name, rate, more in zip(COUNTERS, base, extra, strict=True):
        out[name] = rate * (1 + 0.5 * _wave(vmid, _SALTS[name], t)) + more
    return out


def counters(profile: str, vmid: int, t: float) -> dict[str, float]:
    """The exact integrals of the byte rates of ``rates()`` over [0, t] (floats; the API floors them)."""
    check_profile(profile)
    if profile == "runaway":
        return {name: rate * t for name, rate in zip(COUNTERS, RUNAWAY_RATES, strict=True)}
    base = _auto_rates(vmid) if profile == "auto" else _BASE_RATES[profile]
    out = {
        name: _wavy_integral(vmid, _SALTS[name], rate, t) for name, rate in zip(COUNTERS, base, strict=True)
    }
    if profile == "spiky":
        bursting = burst_seconds(vmid, t)
        for name, more in zip(COUNTERS, SPIKY_BURST_EXTRA, strict=True):
            out[name] += more * bursting
    return out


# ---- which profile a guest follows ----------------------------------------------------------------
def tag_profile(guest: Guest) -> str | None:
    """The profile the first ``load-<profile>`` tag names (unknown names are ignored)."""
    for tag in _TAG_SPLIT.split(guest.config.get("tags", "")):
        name = tag.lower().removeprefix("load-")
        if tag.lower().startswith("load-") and name in PROFILES:
            return name
    return None


def selected_profile(guest: Guest) -> str:
    """What the guest's settings select now: the admin assignment, else its tag, else ``auto``."""
    if guest.load is not None and guest.load in PROFILES:
        return guest.load
    return tag_profile(guest) or "auto"


@dataclass(frozen=True)
class Segment:
    """The profile a running guest follows since ``at``, and its counters at that moment."""

    profile: str
    at: float
    base: dict[str, float]

    def counters_at(self, vmid: int, now: float) -> dict[str, float]:
        integral = counters(self.profile, vmid, max(0.0, now - self.at))
        return {name: self.base.get(name, 0.0) + integral[name] for name in COUNTERS}


def current_segment(guest: Guest) -> Segment | None:
    """The running guest's segment of this boot (or one starting at boot); None when not running."""
    if guest.status != "running" or guest.started_at is None:
        return None
    seg = guest.load_segment
    if seg is not None and seg.get("boot") == guest.boots and seg.get("profile") in PROFILES:
        base = {name: float(seg.get("base", {}).get(name, 0.0)) for name in COUNTERS}
        return Segment(str(seg["profile"]), float(seg["at"]), base)
    return Segment(selected_profile(guest), guest.started_at, {})


def current_profile(guest: Guest) -> str:
    """The profile in effect: the running segment's, else what the guest's next boot would use."""
    seg = current_segment(guest)
    return seg.profile if seg is not None else selected_profile(guest)


def begin_boot(guest: Guest) -> None:
    """Called when QEMU starts: the selected profile runs from the boot, counters from zero."""
    guest.load_segment = None
    if guest.started_at is not None:
        guest.load_segment = _segment_dict(guest, Segment(selected_profile(guest), guest.started_at, {}))


@contextmanager
def profile_change(guest: Guest, now: float) -> Iterator[None]:
    """Wrap any change of a guest's assignment or tags: a running guest switches profile at ``now``.

    The counters so far become the new segment's base, so they stay continuous and monotonic.
    """
    before = current_segment(guest)
    try:
        yield
    finally:
        if before is not None and guest.status == "running":
            after = selected_profile(guest)
            if after != before.profile:
                at = max(now, before.at)
                before = Segment(after, at, before.counters_at(guest.vmid, at))
            guest.load_segment = _segment_dict(guest, before)


def _segment_dict(guest: Guest, seg: Segment) -> dict[str, Any]:
    return {"boot": guest.boots, "profile": seg.profile, "at": seg.at, "base": dict(seg.base)}


def guest_usage(guest: Guest, now: float) -> dict[str, float | int]:
    """cpu (fraction of maxcpu), mem, uptime and cumulative I/O counters at simulated time ``now``."""
    seg = current_segment(guest)
    if seg is None or guest.started_at is None:
        return {"cpu": 0, "mem": 0, "uptime": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0}
    uptime = max(0.0, now - guest.started_at)
    t = max(0.0, now - seg.at)
    rate = rates(seg.profile, guest.vmid, t)
    total = seg.counters_at(guest.vmid, now)
    cpu = 0.0 if guest.qmpstatus == "paused" else rate["cpu"]
    return {
        "cpu": round(min(1.0, cpu), 4),
        "mem": int(guest.memory * min(MEM_CAP, rate["mem"])),
        "uptime": int(uptime),
        **{name: int(total[name]) for name in COUNTERS},
    }
