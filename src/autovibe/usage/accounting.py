"""Usage accounting: what a VM consumed over a window, from PVE's periodic resource samples.

Pure: no I/O, stdlib only. A ``Sample`` is one VM's row of ``/cluster/resources?type=vm`` at one poll. The
samples are sorted by time (input order never matters); samples with the same time collapse to one (exact
duplicates are ignored; of conflicting ones the greatest by all fields wins, so the result is still
independent of order). Each pair of consecutive samples ``a``, ``b`` (``dt = b.time - a.time``) is an
*interval*, and only the part of it inside ``[start, end]`` counts.

Rates (CPU, memory) are integrated with the trapezoid rule, and only over intervals where the VM is known to
have run the whole time: both samples running, in the same boot (``b.uptime >= a.uptime`` and the uptime
advanced by the elapsed time within ``UPTIME_TOLERANCE_S``), and ``dt <= max_gap_s``. A window boundary
inside such an interval clips it, with the rates linearly interpolated at the boundary. Usage is never
estimated as "instantaneous value x uptime". Every other interval is one of:

* *stopped*, nothing to bill, not a gap: both samples stopped (``running`` false; PVE reports uptime 0)
  and ``dt <= max_gap_s``: a VM cannot start and stop again unseen between two regular polls (boots last
  longer than a poll cycle) -- if one does, its bytes are still counted (below), its CPU and memory are not.
* a *gap*, counted in ``gap_s`` because the VM may have run there without being integrated:

  - stopped then running, ``dt <= max_gap_s``: only the part since ``b``'s boot (``b.time - b.uptime``,
    clamped to the interval); before it the VM was known to be stopped;
  - stopped then stopped, or stopped then running, with ``dt > max_gap_s``: polls were missed, the VM may
    have run (or run in another boot) unseen: the whole interval;
  - running then stopped: the stop time is unknown: the whole interval;
  - running then running in another boot, or with the uptime not advancing with the clock, or
    ``dt > max_gap_s``: the whole interval.

Counters (network and disk bytes) are cumulative since the VM booted and restart from 0 on each boot, so
they are counted for every interval, however long (nothing is interpolated):

* ``a`` and ``b`` running in the same boot (no restart detected: ``b.uptime >= a.uptime + dt -
  UPTIME_TOLERANCE_S``) and ``b``'s counter not below ``a``'s: ``b - a``;
* otherwise the counter restarted from zero (a new boot, detected by the uptime or by a counter going
  down; or ``a`` stopped): ``b``'s value, what was used since the restart. What the old boot used after
  ``a`` is lost: no sample ever saw it;
* ``b`` stopped: 0 (a stopped VM's counters are 0 in PVE; any other value is ignored), so what ``a``'s boot
  used after ``a`` is lost as well.

A window boundary inside an interval gives the window the proportional share of the interval's delta,
rounded so that the shares of adjacent windows always add up exactly to the delta: splitting a window and
adding the two ``Usage`` gives the same bytes as the whole window.

Time outside the span of the samples is neither covered nor a gap: to account ``[start, end]`` fully, pass
the last sample at or before ``start`` and the first at or after ``end`` along with the ones inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Final

__all__ = ["UPTIME_TOLERANCE_S", "Sample", "Usage", "integrate", "rollup"]

UPTIME_TOLERANCE_S: Final = 15.0
"""How far the uptime may drift from the wall clock within one boot. PVE's resource rows come from
pvestatd's 10 s broadcast, so a row's uptime can be up to ~10 s stale, and uptime is whole seconds."""

_GIB: Final = float(2**30)
_HOUR: Final = 3600.0
_COUNTERS: Final = ("netin", "netout", "diskread", "diskwrite")


@dataclass(frozen=True, slots=True)
class Sample:
    """One VM's row of ``/cluster/resources?type=vm`` at one poll."""

    time: float  # epoch seconds (UTC)
    running: bool
    cpu: float  # fraction of maxcpu busy, 0..1 (PVE's `cpu`)
    maxcpu: float  # cores
    mem: int  # bytes in use
    netin: int  # cumulative bytes since the VM booted (PVE counters restart from 0 on boot)
    netout: int
    diskread: int
    diskwrite: int
    uptime: int  # seconds since boot; 0 when stopped


@dataclass(frozen=True, slots=True)
class Usage:
    """What a VM consumed over a window (or the sum of several disjoint windows)."""

    cpu_core_hours: float
    mem_gib_hours: float
    net_in_bytes: int
    net_out_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int
    covered_s: float  # seconds of the window for which rates were integrated
    gap_s: float  # seconds not integrated although the VM may have been running

    @property
    def net_gb(self) -> float:
        """Network traffic both ways, in decimal GB."""
        return (self.net_in_bytes + self.net_out_bytes) / 1e9

    @classmethod
    def zero(cls) -> Usage:
        return cls(0.0, 0.0, 0, 0, 0, 0, 0.0, 0.0)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _key(sample: Sample) -> tuple[float, bool, float, float, int, int, int, int, int, int]:
    return (
        sample.time,
        sample.running,
        sample.cpu,
        sample.maxcpu,
        sample.mem,
        sample.netin,
        sample.netout,
        sample.diskread,
        sample.diskwrite,
        sample.uptime,
    )


def _ordered(samples: Sequence[Sample]) -> list[Sample]:
    """Sorted by time, one sample per time (the greatest by all fields)."""
    result: list[Sample] = []
    for sample in sorted(samples, key=_key):
        if result and result[-1].time == sample.time:
            result[-1] = sample
        else:
            result.append(sample)
    return result


def _same_boot(a: Sample, b: Sample, dt: float) -> bool:
    advanced = b.uptime - a.uptime
    return b.uptime >= a.uptime and abs(advanced - dt) <= UPTIME_TOLERANCE_S


def _share(delta: int, a_time: float, dt: float, x: float) -> int:
    """The part of ``delta`` accrued from ``a_time`` to ``x``, rounded down; 0 at ``a_time``, ``delta`` at
    ``a_time + dt``. Shares of adjacent windows telescope, so they add up exactly."""
    if x <= a_time:
        return 0
    if x >= a_time + dt:
        return delta
    return min(delta, max(0, math.floor(delta * ((x - a_time) / dt))))


def integrate(samples: Sequence[Sample], *, start: float, end: float, max_gap_s: float) -> Usage:
    """The usage of one VM over ``[start, end]`` from its ``samples`` (see the module docstring)."""
    if not end >= start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    if not max_gap_s >= 0:
        raise ValueError(f"max_gap_s must be >= 0, not {max_gap_s}")
    ordered = _ordered(samples)
    core_s = 0.0
    mem_byte_s = 0.0
    counters = dict.fromkeys(_COUNTERS, 0)
    covered = 0.0
    gap = 0.0
    for a, b in pairwise(ordered):
        dt = b.time - a.time
        lo = max(a.time, start)
        hi = min(b.time, end)
        if hi <= lo:
            continue
        both_running = a.running and b.running
        # Rates.
        if both_running and dt <= max_gap_s and _same_boot(a, b, dt):
            covered += hi - lo
            ca = a.cpu * a.maxcpu
            cb = b.cpu * b.maxcpu
            f_lo = (lo - a.time) / dt
            f_hi = (hi - a.time) / dt
            core_s += ((ca + (cb - ca) * f_lo) + (ca + (cb - ca) * f_hi)) / 2 * (hi - lo)
            mem_byte_s += (
                ((a.mem + (b.mem - a.mem) * f_lo) + (a.mem + (b.mem - a.mem) * f_hi)) / 2 * (hi - lo)
            )
        elif not a.running and not b.running and dt <= max_gap_s:
            pass  # stopped, nothing to bill
        else:
            gap_from = a.time
            if not a.running and dt <= max_gap_s:  # stopped -> running: stopped until b's boot
                gap_from = min(max(a.time, b.time - b.uptime), b.time)
            gap += max(0.0, hi - max(lo, gap_from))
        # Counters.
        if not b.running:
            continue
        restarted = not a.running or b.uptime < a.uptime + dt - UPTIME_TOLERANCE_S
        for name in _COUNTERS:
            va: int = getattr(a, name)
            vb: int = getattr(b, name)
            delta = vb if restarted or vb < va else vb - va
            counters[name] += _share(delta, a.time, dt, hi) - _share(delta, a.time, dt, lo)
    return Usage(
        cpu_core_hours=core_s / _HOUR,
        mem_gib_hours=mem_byte_s / (_GIB * _HOUR),
        net_in_bytes=counters["netin"],
        net_out_bytes=counters["netout"],
        disk_read_bytes=counters["diskread"],
        disk_write_bytes=counters["diskwrite"],
        covered_s=covered,
        gap_s=gap,
    )


def rollup(samples: Sequence[Sample], *, hour_start: float, max_gap_s: float) -> Usage:
    """The usage over the hour ``[hour_start, hour_start + 3600]`` (include the samples just outside it)."""
    return integrate(samples, start=hour_start, end=hour_start + _HOUR, max_gap_s=max_gap_s)
