"""Properties of the usage accounting engine against exactly known usage.

Each scenario is a VM whose CPU and memory follow piecewise-linear functions of time and whose four
counters grow at piecewise-constant rates, running in several boots with stops (and immediate reboots)
between them. It is sampled every 10-60 s like the hub does, with missed cycles giving gaps both shorter
and longer than ``max_gap_s``, and at least one outage longer than it. The truth is computed analytically
from the definitions, over the intervals the engine's rules integrate (known from the true boots, not from
the samples): CPU and memory within 0.5 % (the trapezoid rule is inexact only where a breakpoint falls
between two samples; breakpoints are >= 900 s apart, values within a factor of 4 and integrated intervals
<= 180 s, so the error stays under 0.3 %), counters exactly: the bytes since each boot, as the rate's
integral from the boot to each sample.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autovibe.usage.accounting import Sample, Usage, integrate

T0 = 1_700_000_000.0
GIB = 2**30
COUNTERS = ("netin", "netout", "diskread", "diskwrite")
USAGE_COUNTERS = ("net_in_bytes", "net_out_bytes", "disk_read_bytes", "disk_write_bytes")


@dataclass(frozen=True)
class PiecewiseLinear:
    xs: list[float]
    ys: list[float]

    def __call__(self, t: float) -> float:
        i = min(max(bisect.bisect_right(self.xs, t) - 1, 0), len(self.xs) - 2)
        x0, x1, y0, y1 = self.xs[i], self.xs[i + 1], self.ys[i], self.ys[i + 1]
        return y0 + (y1 - y0) * (t - x0) / (x1 - x0)

    def integral(self, lo: float, hi: float) -> float:
        """Exact, breakpoint by breakpoint."""
        inside = self.xs[bisect.bisect_right(self.xs, lo) : bisect.bisect_left(self.xs, hi)]
        points = [lo, *inside, hi]
        return sum((self(p) + self(q)) / 2 * (q - p) for p, q in pairwise(points))


@dataclass(frozen=True)
class PiecewiseConstant:
    xs: list[float]  # breakpoints; rates[i] holds on [xs[i], xs[i + 1])
    rates: list[float]
    sums: list[float] = field(init=False)  # the cumulative value at each breakpoint

    def __post_init__(self) -> None:
        sums = [0.0]
        for i, rate in enumerate(self.rates):
            sums.append(sums[-1] + rate * (self.xs[i + 1] - self.xs[i]))
        object.__setattr__(self, "sums", sums)

    def cumulative(self, t: float) -> float:
        """Integral of the rate from xs[0] to t (within xs)."""
        i = min(max(bisect.bisect_right(self.xs, t) - 1, 0), len(self.rates) - 1)
        return self.sums[i] + self.rates[i] * (t - self.xs[i])


@dataclass(frozen=True)
class Scenario:
    boots: list[tuple[float, float]]  # [start, stop) of each boot
    cpu: PiecewiseLinear  # fraction of maxcpu
    mem: PiecewiseLinear  # bytes
    maxcpu: float
    rates: dict[str, PiecewiseConstant]
    max_gap: float
    samples: list[Sample]  # sorted, distinct times
    boot_of: list[int | None]  # the true boot of each sample, None when stopped

    def counter(self, name: str, boot: int, t: float) -> int:
        """Bytes since the boot: the integral of the rate from the boot to t."""
        rate = self.rates[name]
        return math.floor(rate.cumulative(t) - rate.cumulative(self.boots[boot][0]))


# ---------------------------------------------------------------------------------------------------------
# Strategies


def _piecewise_linear(rng: random.Random, begin: float, end: float, low: float) -> PiecewiseLinear:
    xs = [begin - 10.0]
    while xs[-1] < end + 10:
        xs.append(xs[-1] + rng.uniform(900, 3600))
    return PiecewiseLinear(xs, [rng.uniform(low, 4 * low) for _ in xs])


def _piecewise_constant(rng: random.Random, begin: float, end: float, peak: float) -> PiecewiseConstant:
    xs = [begin]
    while xs[-1] < end:
        xs.append(xs[-1] + rng.uniform(30, 1800))
    return PiecewiseConstant(xs, [rng.choice([0.0, rng.uniform(0, peak)]) for _ in xs[1:]])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    period = draw(st.floats(10, 60))
    max_gap = draw(st.floats(max(90.0, 2.5 * period), 180.0))
    horizon = draw(st.floats(5400, 10800))
    begin, end = T0, T0 + horizon
    earlier = 200_000.0  # the first boot may have started long before

    # Boots: running for >= 120 s, then stopped for a few seconds (an immediate reboot) or much longer.
    boots: list[tuple[float, float]] = []
    t = begin - draw(st.floats(0, earlier)) if draw(st.booleans()) else begin + draw(st.floats(0, 600))
    first_run = draw(st.floats(120, horizon / 3))
    while t < end:
        length = first_run if not boots else rng.uniform(120, 3600)
        stop = max(t + length, begin + first_run) if not boots else t + length
        boots.append((t, stop))
        t = stop + (rng.uniform(0, 5) if rng.random() < 0.3 else rng.uniform(30, 1800))

    # Sample times: every period +- 2 s, sometimes a missed cycle (a short gap), and outages longer than
    # max_gap (at least one).
    outages = sorted(draw(st.lists(st.floats(begin + 300, end - 1200), min_size=1, max_size=3)))
    times: list[float] = []
    t = begin
    while t < end:
        times.append(t)
        if outages and t >= outages[0]:
            outages.pop(0)
            t += max_gap + rng.uniform(1, 900)
        elif rng.random() < 0.05:
            t += 2 * period + rng.uniform(-2, 2)
        else:
            t += period + rng.uniform(-2, 2)

    cpu = _piecewise_linear(rng, begin - earlier, end, draw(st.floats(0.01, 0.25)))
    mem = _piecewise_linear(rng, begin - earlier, end, draw(st.floats(256 * 2**20, 4 * GIB)))
    maxcpu = float(draw(st.sampled_from([1, 2, 4, 8, 16])))
    peaks = {"netin": 5e6, "netout": 1e6, "diskread": 2e7, "diskwrite": 5e5}
    rates = {name: _piecewise_constant(rng, begin - earlier - 1, end + 1, peaks[name]) for name in COUNTERS}
    scenario = Scenario(boots, cpu, mem, maxcpu, rates, max_gap, [], [])
    for t in times:
        boot = next((i for i, (b0, b1) in enumerate(boots) if b0 <= t < b1), None)
        scenario.boot_of.append(boot)
        if boot is None:
            scenario.samples.append(Sample(t, False, 0.0, maxcpu, 0, 0, 0, 0, 0, 0))
        else:
            netin, netout, diskread, diskwrite = (scenario.counter(name, boot, t) for name in COUNTERS)
            uptime = math.floor(t - boots[boot][0])
            sample = Sample(t, True, cpu(t), maxcpu, int(mem(t)), netin, netout, diskread, diskwrite, uptime)
            scenario.samples.append(sample)

    # Every case has a counter reset (running samples in two boots) and a gap longer than max_gap.
    assume(len({boot for boot in scenario.boot_of if boot is not None}) >= 2)
    assert any(b - a > max_gap for a, b in pairwise(times))
    return scenario


@st.composite
def windows(draw: st.DrawFn, scenario: Scenario) -> tuple[float, float]:
    first, last = scenario.samples[0].time, scenario.samples[-1].time
    start = draw(st.floats(first - 100, last))
    return start, draw(st.floats(start, last + 100))


# ---------------------------------------------------------------------------------------------------------
# The truth


@dataclass(frozen=True)
class Truth:
    core_hours: float
    gib_hours: float
    covered_s: float
    gap_s: float
    gap_slack_s: float  # the engine places a boot from the whole-second uptime: up to 1 s earlier


def truth(scenario: Scenario, start: float, end: float) -> Truth:
    core_s = byte_s = covered = gap = slack = 0.0
    pairs = pairwise(scenario.samples)
    boots = pairwise(scenario.boot_of)
    for (a, b), (boot_a, boot_b) in zip(pairs, boots, strict=True):
        lo, hi = max(a.time, start), min(b.time, end)
        if hi <= lo:
            continue
        short = b.time - a.time <= scenario.max_gap
        if boot_a is not None and boot_a == boot_b and short:
            covered += hi - lo
            core_s += scenario.maxcpu * scenario.cpu.integral(lo, hi)
            byte_s += scenario.mem.integral(lo, hi)
        elif boot_a is None and boot_b is None and short:
            pass
        elif boot_a is None and boot_b is not None and short:
            gap += max(0.0, hi - max(lo, scenario.boots[boot_b][0]))
            slack += 1.0
        else:
            gap += hi - lo
    return Truth(core_s / 3600, byte_s / (GIB * 3600), covered, gap, slack)


def true_counters(scenario: Scenario) -> dict[str, int]:
    """All the bytes between the first and the last sample that some sample saw: for each boot, the bytes
    from the boot (or from the first sample) to its last sample."""
    totals = dict.fromkeys(COUNTERS, 0)
    last_in_boot: dict[int, float] = {}
    for sample, boot in zip(scenario.samples, scenario.boot_of, strict=True):
        if boot is not None:
            last_in_boot[boot] = sample.time
    first, first_boot = scenario.samples[0], scenario.boot_of[0]
    for boot, t in last_in_boot.items():
        for name in COUNTERS:
            since = scenario.counter(name, boot, first.time) if boot == first_boot else 0
            totals[name] += scenario.counter(name, boot, t) - since
    return totals


def counters(result: Usage) -> list[int]:
    return [getattr(result, name) for name in USAGE_COUNTERS]


def run(scenario: Scenario, samples: list[Sample], start: float, end: float) -> Usage:
    return integrate(samples, start=start, end=end, max_gap_s=scenario.max_gap)


# ---------------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_the_exact_integrals(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    start, end = data.draw(windows(scenario))
    got = run(scenario, scenario.samples, start, end)
    want = truth(scenario, start, end)
    assert got.cpu_core_hours == pytest.approx(want.core_hours, rel=0.005, abs=1e-12)
    assert got.mem_gib_hours == pytest.approx(want.gib_hours, rel=0.005, abs=1e-12)
    assert got.covered_s == pytest.approx(want.covered_s, abs=1e-6)
    assert abs(got.gap_s - want.gap_s) <= want.gap_slack_s + 1e-6


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_counters_are_the_bytes_since_each_boot(scenario: Scenario) -> None:
    first, last = scenario.samples[0].time, scenario.samples[-1].time
    whole = run(scenario, scenario.samples, first - 1000, last + 1000)
    want = true_counters(scenario)
    assert counters(whole) == [want[name] for name in COUNTERS]
    want_truth = truth(scenario, first, last)
    assert whole.gap_s > 0  # the outage
    assert whole.cpu_core_hours == pytest.approx(want_truth.core_hours, rel=0.005)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_splitting_a_window_adds_up(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    start, end = data.draw(windows(scenario))
    middle = data.draw(st.floats(start, end))
    whole = run(scenario, scenario.samples, start, end)
    parts = run(scenario, scenario.samples, start, middle) + run(scenario, scenario.samples, middle, end)
    assert counters(parts) == counters(whole)
    for name in ("cpu_core_hours", "mem_gib_hours", "covered_s", "gap_s"):
        assert getattr(parts, name) == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_invariant_to_order_and_duplicates(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    start, end = data.draw(windows(scenario))
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    shuffled = rng.sample(scenario.samples, len(scenario.samples))
    duplicates = rng.choices(scenario.samples, k=rng.randrange(20))
    assert run(scenario, [*shuffled, *duplicates], start, end) == run(scenario, scenario.samples, start, end)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_more_samples_never_decrease_the_counters(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    dropped = data.draw(st.floats(0.0, 0.9))
    fewer = [sample for sample in scenario.samples if rng.random() >= dropped]
    start, end = scenario.samples[0].time, scenario.samples[-1].time
    all_of_them = counters(run(scenario, scenario.samples, start, end))
    some = counters(run(scenario, fewer, start, end))
    assert all(s <= a for s, a in zip(some, all_of_them, strict=True))
