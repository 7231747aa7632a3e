"""The usage accounting engine on small hand-computed cases."""

from __future__ import annotations

import dataclasses

import pytest

from autovibe.usage.accounting import Sample, Usage, integrate, rollup

GIB = 2**30
T0 = 1_700_000_000.0


def run(
    t: float,
    *,
    uptime: int,
    cpu: float = 1.0,
    maxcpu: float = 1.0,
    mem: int = GIB,
    netin: int = 0,
    netout: int = 0,
    diskread: int = 0,
    diskwrite: int = 0,
) -> Sample:
    return Sample(T0 + t, True, cpu, maxcpu, mem, netin, netout, diskread, diskwrite, uptime)


def stopped(t: float) -> Sample:
    return Sample(T0 + t, False, 0.0, 1.0, 0, 0, 0, 0, 0, 0)


def usage(samples: list[Sample], start: float, end: float, max_gap_s: float = 120.0) -> Usage:
    return integrate(samples, start=T0 + start, end=T0 + end, max_gap_s=max_gap_s)


def steady() -> list[Sample]:
    """Up since T0 - 1000 s: 2 cores at 50 %, 2 GiB, 1000 B/s in, 10 B/s out, a sample a minute."""
    return [
        run(
            t,
            uptime=1000 + t,
            cpu=0.5,
            maxcpu=2,
            mem=2 * GIB,
            netin=1000 * (1000 + t),
            netout=10 * (1000 + t),
        )
        for t in range(0, 3601, 60)
    ]


def test_steady_usage_over_an_hour() -> None:
    result = usage(steady(), 0, 3600)
    assert result.cpu_core_hours == pytest.approx(1.0)
    assert result.mem_gib_hours == pytest.approx(2.0)
    assert result.net_in_bytes == 3_600_000
    assert result.net_out_bytes == 36_000
    assert result.net_gb == pytest.approx(3_636_000 / 1e9)
    assert (result.covered_s, result.gap_s) == (3600.0, 0.0)


def test_a_ramp_is_integrated_exactly() -> None:
    # cpu 0 -> 100 % of 4 cores and mem 0 -> 4 GiB over an hour: the mean is half.
    samples = [
        run(0, uptime=100, cpu=0.0, maxcpu=4, mem=0),
        run(1800, uptime=1900, cpu=0.5, maxcpu=4, mem=2 * GIB),
        run(3600, uptime=3700, cpu=1.0, maxcpu=4, mem=4 * GIB),
    ]
    result = usage(samples, 0, 3600, max_gap_s=3600)
    assert result.cpu_core_hours == pytest.approx(2.0)
    assert result.mem_gib_hours == pytest.approx(2.0)
    # Up then down: a triangle.
    peak = [run(0, uptime=100, cpu=0.0), run(1800, uptime=1900, cpu=1.0), run(3600, uptime=3700, cpu=0.0)]
    assert usage(peak, 0, 3600, max_gap_s=3600).cpu_core_hours == pytest.approx(0.5)


def test_a_restart_in_the_middle_is_a_gap_and_resets_the_counters() -> None:
    samples = [
        run(0, uptime=500, netin=10_000),
        run(60, uptime=560, netin=16_000),
        run(120, uptime=620, netin=22_000),
        run(180, uptime=30, netin=3_000),  # rebooted at 150
        run(240, uptime=90, netin=9_000),
    ]
    result = usage(samples, 0, 240)
    assert result.covered_s == 180.0
    assert result.gap_s == 60.0
    assert result.cpu_core_hours == pytest.approx(180 / 3600)
    assert result.mem_gib_hours == pytest.approx(180 / 3600)
    # 6000 + 6000 in the first boot, 3000 since the reboot, 6000 after; what boot 1 used after 120 is lost.
    assert result.net_in_bytes == 21_000


def test_a_restart_is_detected_even_when_the_counters_grew() -> None:
    samples = [run(0, uptime=500, netin=1_000), run(60, uptime=20, netin=5_000)]
    result = usage(samples, 0, 60)
    assert result.net_in_bytes == 5_000
    assert (result.covered_s, result.gap_s) == (0.0, 60.0)


def test_a_counter_going_down_in_the_same_boot_restarted_from_zero() -> None:
    samples = [
        run(0, uptime=500, netin=50_000, netout=100),
        run(60, uptime=560, netin=2_000, netout=700),
    ]
    result = usage(samples, 0, 60)
    assert result.net_in_bytes == 2_000
    assert result.net_out_bytes == 600
    assert result.covered_s == 60.0  # the boot is the same: rates are still integrated


def test_a_gap_longer_than_max_gap_is_not_integrated_but_its_bytes_count() -> None:
    samples = [run(t, uptime=1000 + t, netin=100 * t, diskwrite=7 * t) for t in (0, 60, 660, 720)]
    result = usage(samples, 0, 720, max_gap_s=120)
    assert result.covered_s == 120.0
    assert result.gap_s == 600.0
    assert result.cpu_core_hours == pytest.approx(120 / 3600)
    assert result.net_in_bytes == 72_000
    assert result.disk_write_bytes == 7 * 720
    # max_gap_s is inclusive.
    assert usage(samples, 0, 720, max_gap_s=600).covered_s == 720.0


def test_window_clipping_interpolates_rates_and_shares_counters() -> None:
    samples = [
        run(0, uptime=1000, cpu=0.0, netin=0, netout=0),
        run(100, uptime=1100, cpu=1.0, netin=1_000, netout=7),
    ]
    inner = usage(samples, 25, 75)
    # The integral of t/100 from 25 to 75.
    assert inner.cpu_core_hours == pytest.approx(25 / 3600)
    assert inner.covered_s == 50.0
    assert inner.net_in_bytes == 500
    # A window reaching past the samples: only the part with samples on both sides counts.
    left = usage(samples, -100, 50)
    assert left.cpu_core_hours == pytest.approx(12.5 / 3600)
    assert (left.covered_s, left.gap_s) == (50.0, 0.0)
    assert left.net_in_bytes == 500
    # Odd deltas: the shares of adjacent windows still add up.
    right = usage(samples, 50, 200)
    assert left.net_out_bytes + right.net_out_bytes == 7
    assert (left + right).cpu_core_hours == pytest.approx(0.5 / 36)
    # A window outside the samples, or empty.
    assert usage(samples, 200, 300) == Usage.zero()
    assert usage(samples, 50, 50) == Usage.zero()


def test_unsorted_and_duplicated_input() -> None:
    samples = steady()
    shuffled = samples[::-1] + samples[10:20] + samples[:3]
    assert usage(shuffled, 0, 3600) == usage(samples, 0, 3600)


def test_conflicting_samples_at_the_same_time_collapse_independently_of_order() -> None:
    a = run(0, uptime=1000, netin=0)
    b1 = run(60, uptime=1060, netin=6_000)
    b2 = run(60, uptime=1060, netin=6_500)
    c = run(120, uptime=1120, netin=12_000)
    first = usage([a, b1, b2, c], 0, 120)
    assert first == usage([c, b2, b1, a], 0, 120)
    assert first.net_in_bytes == 12_000
    assert first.covered_s == 120.0


def test_empty_and_single_sample() -> None:
    assert usage([], 0, 3600) == Usage.zero()
    assert usage([run(10, uptime=100)], 0, 3600) == Usage.zero()


def test_stopped_periods() -> None:
    samples = [
        stopped(0),
        stopped(60),
        stopped(120),
        run(180, uptime=40, netin=4_000),  # booted at 140
        run(240, uptime=100, netin=10_000),
        stopped(300),
        stopped(360),
    ]
    result = usage(samples, 0, 360)
    # Stopped -> stopped is nothing; stopped -> running is a gap from the boot on; running -> stopped is a
    # gap (the stop time is unknown).
    assert result.covered_s == 60.0
    assert result.gap_s == 40.0 + 60.0
    assert result.cpu_core_hours == pytest.approx(60 / 3600)
    assert result.net_in_bytes == 10_000


def test_stopped_for_longer_than_max_gap_is_a_gap() -> None:
    # Polls were missed: the VM may have run unseen.
    assert usage([stopped(0), stopped(1000)], 0, 1000).gap_s == 1000.0
    result = usage([stopped(0), run(1000, uptime=30, netin=77)], 0, 1000)
    assert (result.gap_s, result.net_in_bytes) == (1000.0, 77)


def test_stopped_samples_never_bill_bytes() -> None:
    stale = dataclasses.replace(stopped(60), netin=99_999)
    result = usage(
        [run(0, uptime=500, netin=1_000), stale, stale, dataclasses.replace(stale, time=T0 + 90)], 0, 90
    )
    assert result.net_in_bytes == 0


def test_uptime_tolerance() -> None:
    a = run(0, uptime=1000, netin=1_000)
    # A few seconds off: the same boot.
    assert usage([a, run(60, uptime=1057, netin=2_000)], 0, 60).covered_s == 60.0
    # Ahead by 40 s: not integrated, but no restart either (the counter keeps its delta).
    ahead = usage([a, run(60, uptime=1100, netin=2_000)], 0, 60)
    assert (ahead.covered_s, ahead.gap_s, ahead.net_in_bytes) == (0.0, 60.0, 1_000)
    # Behind by 30 s: a restart.
    behind = usage([a, run(60, uptime=1030, netin=2_000)], 0, 60)
    assert (behind.covered_s, behind.gap_s, behind.net_in_bytes) == (0.0, 60.0, 2_000)
    # The uptime going backwards within the tolerance is still not the same boot.
    back = usage([run(0, uptime=1000), run(5, uptime=999)], 0, 5, max_gap_s=120)
    assert back.covered_s == 0.0


def test_usage_arithmetic() -> None:
    one = Usage(1.0, 2.0, 3, 4, 5, 6, 7.0, 8.0)
    assert one + Usage.zero() == one
    assert one + one == Usage(2.0, 4.0, 6, 8, 10, 12, 14.0, 16.0)
    assert Usage(0.0, 0.0, 2_000_000_000, 500_000_000, 0, 0, 0.0, 0.0).net_gb == 2.5
    with pytest.raises(TypeError):
        one + 1  # type: ignore[operator]


def test_rollup_is_the_hour() -> None:
    samples = [run(t, uptime=1000 + t, netin=1000 + t) for t in range(-30, 3700, 60)]
    hour = rollup(samples, hour_start=T0, max_gap_s=120)
    assert hour == integrate(samples, start=T0, end=T0 + 3600, max_gap_s=120)
    assert hour.covered_s == pytest.approx(3600.0)
    assert hour.cpu_core_hours == pytest.approx(1.0)
    assert hour.net_in_bytes == 3600


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        usage(steady(), 10, 0)
    with pytest.raises(ValueError, match="max_gap_s"):
        usage(steady(), 0, 10, max_gap_s=-1)
