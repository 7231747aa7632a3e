"""Properties of the retention engine, restic's duration syntax, Go's AddDate, and bad input."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from autovibe.checkpoints.retention import (
    Checkpoint,
    Decision,
    Duration,
    RetentionPolicy,
    go_add_date,
    parse_duration,
    plan,
)

BASE = datetime(2022, 11, 20, 13, 5, 0, tzinfo=UTC)
COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHINS = ("within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")


def _kept(decisions: list[Decision]) -> set[str]:
    return {d.name for d in decisions if d.keep}


# ---------------------------------------------------------------------------------------------------------
# Strategies


@st.composite
def checkpoint_lists(draw: st.DrawFn, max_size: int = 60) -> list[Checkpoint]:
    # Offsets in seconds back from BASE, distinct; dense (minutes), medium (days) or sparse (years) spreads.
    spread = draw(st.sampled_from([3 * 3600, 20 * 86400, 900 * 86400, 6 * 365 * 86400]))
    offsets = draw(st.lists(st.integers(0, spread), min_size=0, max_size=max_size, unique=True))
    return [
        Checkpoint(
            name=f"c{index}",
            time=BASE - timedelta(seconds=offset),
            pinned=draw(st.booleans().map(lambda b: b and draw(st.booleans()))),
            branch_point=draw(st.integers(0, 5)) == 0,
        )
        for index, offset in enumerate(offsets)
    ]


durations = st.builds(
    Duration,
    years=st.integers(0, 3),
    months=st.integers(0, 14),
    days=st.integers(0, 40),
    hours=st.integers(0, 72),
)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, object]:
    fields: dict[str, object] = {}
    for word in COUNTS:
        fields[word] = draw(st.integers(0, 12))
    for word in WITHINS:
        duration = draw(st.none() | durations)
        fields[word] = None if duration is None else str(duration)
    fields["protect_branch_points"] = draw(st.booleans())
    return fields


def _more_generous(draw: st.DrawFn, fields: dict[str, object]) -> dict[str, object]:
    """Every count >= and every duration >= component by component (years, months, days, hours)."""
    bigger = dict(fields)
    for word in COUNTS:
        bigger[word] = int(fields[word]) + draw(st.integers(0, 5))  # type: ignore[call-overload]
    for word in WITHINS:
        extra = draw(st.none() | durations)
        if extra is None:
            continue
        base = parse_duration(str(fields[word] or ""))
        bigger[word] = str(
            Duration(
                base.years + extra.years,
                base.months + extra.months,
                base.days + extra.days,
                base.hours + extra.hours,
            )
        )
    return bigger


# ---------------------------------------------------------------------------------------------------------
# Properties of plan


@settings(max_examples=300)
@given(checkpoint_lists(), policies())
def test_a_second_pass_over_the_survivors_removes_nothing_and_gives_the_same_reasons(
    checkpoints: list[Checkpoint], fields: dict[str, object]
) -> None:
    policy = RetentionPolicy.model_validate(fields)
    first = plan(checkpoints, policy)
    survivors = [cp for cp in checkpoints if cp.name in _kept(first)]
    second = plan(survivors, policy)
    assert all(d.keep for d in second)
    assert second == [d for d in first if d.keep]


@settings(max_examples=200)
@given(checkpoint_lists(), policies(), st.integers(-3 * 86400, 3 * 86400))
def test_with_future_checkpoints_a_second_pass_still_removes_nothing(
    checkpoints: list[Checkpoint], fields: dict[str, object], now_offset: int
) -> None:
    # With ``now`` some checkpoints may be "in the future" and the newest one that counts may be removed (a
    # future one took its hourly slot); a second pass then counts back from an older checkpoint, so its
    # windows only grow: the reasons may change, but nothing kept is removed.
    policy = RetentionPolicy.model_validate(fields)
    now = BASE - timedelta(seconds=now_offset)
    first = plan(checkpoints, policy, now=now)
    survivors = [cp for cp in checkpoints if cp.name in _kept(first)]
    assert all(d.keep for d in plan(survivors, policy, now=now))


@given(checkpoint_lists(), policies())
def test_pinned_checkpoints_and_protected_branch_points_are_never_removed(
    checkpoints: list[Checkpoint], fields: dict[str, object]
) -> None:
    policy = RetentionPolicy.model_validate(fields)
    decisions = {d.name: d for d in plan(checkpoints, policy)}
    for cp in checkpoints:
        decision = decisions[cp.name]
        if cp.pinned:
            assert decision.keep
            assert "pinned" in decision.reasons or decision.reasons == ("policy is empty",)
        if cp.branch_point and policy.protect_branch_points:
            assert decision.keep
        if not policy.protect_branch_points:
            assert "branch point" not in decision.reasons


@given(checkpoint_lists(), st.integers(1, 70), policies())
def test_keep_last_n_keeps_the_n_newest(
    checkpoints: list[Checkpoint], n: int, fields: dict[str, object]
) -> None:
    policy = RetentionPolicy.model_validate({**fields, "last": n})
    decisions = plan(checkpoints, policy)
    newest = sorted(checkpoints, key=lambda cp: cp.time, reverse=True)[:n]
    assert {cp.name for cp in newest} <= _kept(decisions)
    assert [d.name for d in decisions[:n]] == [cp.name for cp in newest]
    assert all("last" in d.reasons for d in decisions[:n])
    assert not any("last" in d.reasons for d in decisions[n:])


@settings(max_examples=300)
@given(checkpoint_lists(), policies(), st.data())
def test_a_more_generous_policy_never_keeps_less(
    checkpoints: list[Checkpoint], fields: dict[str, object], data: st.DataObject
) -> None:
    # Holds for restic's algorithm as a superset, not just in number: each counted bucket keeps the first
    # checkpoint of each of its first N key groups (keys only grow older along the sorted list), and a
    # longer duration only moves the threshold further back (Go's AddDate is monotone in every component).
    # The one exception: an EMPTY policy keeps everything, so "nothing" -> "keep 1 last" keeps fewer.
    # Hence the smaller policy is made non-empty.
    fields = {**fields, "yearly": max(1, int(fields["yearly"]))}  # type: ignore[call-overload]
    generous = _more_generous(data.draw, fields)
    small = _kept(plan(checkpoints, RetentionPolicy.model_validate(fields)))
    large = _kept(plan(checkpoints, RetentionPolicy.model_validate(generous)))
    assert small <= large


def test_the_empty_policy_exception_to_generosity() -> None:
    checkpoints = [Checkpoint(f"c{i}", BASE - timedelta(days=i)) for i in range(3)]
    assert _kept(plan(checkpoints, RetentionPolicy())) == {"c0", "c1", "c2"}
    assert _kept(plan(checkpoints, RetentionPolicy(last=1))) == {"c0"}


def test_an_empty_policy_keeps_everything_newest_first() -> None:
    checkpoints = [Checkpoint(f"c{i}", BASE + timedelta(hours=i)) for i in range(4)]
    decisions = plan(checkpoints, RetentionPolicy(within="0d"))
    assert decisions == [Decision(f"c{i}", True, ("policy is empty",)) for i in (3, 2, 1, 0)]
    assert plan([], RetentionPolicy(last=3)) == []


def test_reasons_follow_restics_order() -> None:
    checkpoints = [
        Checkpoint("old", BASE - timedelta(days=400), pinned=True),
        Checkpoint("mid", BASE - timedelta(hours=30), branch_point=True),
        Checkpoint("new", BASE),
    ]
    policy = RetentionPolicy(last=1, daily=2, yearly=5, within="1d", within_hourly="2d")
    assert plan(checkpoints, policy) == [
        Decision("new", True, ("within 1d", "last", "daily", "yearly", "hourly within 2d")),
        Decision("mid", True, ("branch point", "daily", "hourly within 2d")),
        Decision("old", True, ("pinned", "yearly")),
    ]
    unprotected = RetentionPolicy(last=1, daily=1, protect_branch_points=False)
    assert plan(checkpoints, unprotected) == [
        Decision("new", True, ("last", "daily")),
        Decision("mid", False, ()),
        Decision("old", True, ("pinned",)),
    ]


def test_within_is_strictly_after_the_threshold() -> None:
    checkpoints = [Checkpoint("new", BASE), Checkpoint("edge", BASE - timedelta(days=1))]
    assert _kept(plan(checkpoints, RetentionPolicy(within="1d"))) == {"new"}
    assert _kept(plan(checkpoints, RetentionPolicy(within="1d1h"))) == {"new", "edge"}


def test_window_buckets_keep_one_per_key_strictly_after_the_threshold() -> None:
    checkpoints = [
        Checkpoint("new", BASE),
        Checkpoint("same-day", BASE - timedelta(hours=1)),
        Checkpoint("edge", BASE - timedelta(days=1)),
        Checkpoint("older", BASE - timedelta(days=1, minutes=30)),
    ]
    assert _kept(plan(checkpoints, RetentionPolicy(within_daily="1d"))) == {"new"}
    decisions = plan(checkpoints, RetentionPolicy(within_daily="1d1h"))
    assert [d.reasons for d in decisions] == [("daily within 1d1h",), (), ("daily within 1d1h",), ()]


def test_future_checkpoints_do_not_move_the_newest_only_with_now() -> None:
    checkpoints = [
        Checkpoint("future", BASE + timedelta(days=30)),
        Checkpoint("new", BASE),
        Checkpoint("old", BASE - timedelta(hours=20)),
    ]
    policy = RetentionPolicy(within="1d")
    assert _kept(plan(checkpoints, policy)) == {"future"}
    assert _kept(plan(checkpoints, policy, now=BASE + timedelta(seconds=1))) == {"future", "new", "old"}
    # A checkpoint exactly at ``now`` is in the future too (restic: Time.Before(now)).
    assert _kept(plan(checkpoints, policy, now=BASE)) == {"future", "new", "old"}
    at_now = [Checkpoint("new", BASE), Checkpoint("older", BASE - timedelta(days=2))]
    assert _kept(plan(at_now, policy, now=BASE)) == {"new", "older"}
    assert _kept(plan(at_now, policy, now=BASE + timedelta(seconds=1))) == {"new"}


def test_all_in_the_future_makes_every_window_cover_everything() -> None:
    checkpoints = [Checkpoint(f"c{i}", BASE + timedelta(days=100 * i)) for i in range(5)]
    decisions = plan(
        checkpoints, RetentionPolicy(within="1h", within_yearly="1h"), now=BASE - timedelta(days=1)
    )
    assert all(d.keep for d in decisions)
    assert decisions[-1].reasons == ("within 1h", "yearly within 1h")


def test_bucket_keys_are_utc_and_iso_weeks() -> None:
    plus_two = timezone(timedelta(hours=2))
    checkpoints = [
        # 2021-01-01 01:30 at +02:00 is 2020-12-31 23:30 UTC: same UTC day as the next one.
        Checkpoint("a", datetime(2021, 1, 1, 1, 30, tzinfo=plus_two)),
        Checkpoint("b", datetime(2020, 12, 31, 22, 0, tzinfo=UTC)),
        # ISO week 53 of 2020 runs from Monday 2020-12-28 to Sunday 2021-01-03.
        Checkpoint("c", datetime(2021, 1, 3, 12, 0, tzinfo=UTC)),
        Checkpoint("d", datetime(2021, 1, 4, 12, 0, tzinfo=UTC)),
    ]
    assert [d.name for d in plan(checkpoints, RetentionPolicy(daily=9)) if d.keep] == ["d", "c", "a"]
    assert [d.name for d in plan(checkpoints, RetentionPolicy(weekly=9)) if d.keep] == ["d", "c"]
    assert [d.name for d in plan(checkpoints, RetentionPolicy(yearly=9)) if d.keep] == ["d", "a"]


def test_equal_times_keep_the_input_order() -> None:
    checkpoints = [
        Checkpoint("first", BASE),
        Checkpoint("second", BASE),
        Checkpoint("older", BASE - timedelta(1)),
    ]
    assert [d.name for d in plan(checkpoints, RetentionPolicy(daily=1))] == ["first", "second", "older"]
    assert _kept(plan(checkpoints, RetentionPolicy(daily=1))) == {"first"}


@dataclass
class Record:
    """A caller's own record: anything with name, time, pinned and branch_point will do."""

    name: str
    time: datetime | None
    pinned: bool = False
    branch_point: bool = False
    note: str = ""


def test_plan_accepts_any_record_with_the_attributes() -> None:
    records = [Record("b", BASE, note="x"), Record("a", BASE - timedelta(days=2), pinned=True)]
    assert plan(records, RetentionPolicy(last=1)) == [
        Decision("b", True, ("last",)),
        Decision("a", True, ("pinned",)),
    ]


# ---------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_checkpoints_and_now_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Checkpoint("a", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        plan([Record("a", datetime(2024, 1, 1))], RetentionPolicy(last=1))
    with pytest.raises(ValueError, match="has no time"):
        plan([Record("a", None)], RetentionPolicy(last=1))
    with pytest.raises(ValueError, match="two checkpoints are named 'a'"):
        plan([Record("a", BASE), Record("a", BASE - timedelta(1))], RetentionPolicy(last=1))
    with pytest.raises(ValueError, match="naive"):
        plan([Record("a", BASE)], RetentionPolicy(last=1), now=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"last": -1}, "no -1"),
        ({"daily": -5}, "must be 0"),
        ({"weekly": True}, "valid integer"),
        ({"monthly": "3"}, "valid integer"),
        ({"yearly": 1.5}, "valid integer"),
        ({"within": 3}, "must be a string"),
        ({"within_daily": "3w"}, "invalid unit 'w'"),
        ({"keep_last": 3}, "Extra inputs"),
        ({"protect_branch_points": "no"}, "valid boolean"),
    ],
)
def test_bad_policies_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetentionPolicy.model_validate(fields)


def test_policies_are_frozen_and_round_trip_through_json() -> None:
    policy = RetentionPolicy(last=3, within="12h3d", within_monthly="0y2m")
    assert policy.within == "3d12h"
    assert policy.within_monthly == "2m"
    assert RetentionPolicy.model_validate_json(policy.model_dump_json()) == policy
    with pytest.raises(ValidationError):
        policy.last = 4  # type: ignore[misc]


def test_is_empty_flags_and_describe() -> None:
    assert RetentionPolicy().is_empty()
    assert RetentionPolicy(within="0d", protect_branch_points=False).is_empty()
    policy = RetentionPolicy(last=3, daily=7, within="3d12h", within_hourly="2d")
    assert not policy.is_empty()
    assert policy.flags() == [
        "--keep-last", "3", "--keep-daily", "7", "--keep-within", "3d12h", "--keep-within-hourly", "2d"
    ]  # fmt: skip
    assert policy.describe() == (
        "keep 3 latest, 7 daily checkpoints, hourly checkpoints within 2d and all checkpoints within 3d12h "
        "of the newest; pinned checkpoints and branch points are always kept"
    )
    assert RetentionPolicy(within="1y").describe().startswith("keep all checkpoints within 1y of the newest;")
    assert RetentionPolicy(protect_branch_points=False).describe() == (
        "keep all checkpoints (the policy is empty); pinned checkpoints are always kept "
        "(branch points are not protected)"
    )


# ---------------------------------------------------------------------------------------------------------
# restic's duration syntax


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y5m7d2h", Duration(1, 5, 7, 2)),
        ("1d2h", Duration(days=1, hours=2)),
        ("2h1d", Duration(days=1, hours=2)),
        ("2h30m", Duration(months=30, hours=2)),  # m is months, as in restic
        ("0d", Duration()),
        ("0h0d", Duration()),
        ("", Duration()),
        (" \t1d\n", Duration(days=1)),
        ("\u00a03h\u2003", Duration(hours=3)),  # Go's TrimSpace takes Unicode spaces
        ("01d", Duration(days=1)),
        ("1d3d", Duration(days=3)),  # the last one wins
        ("1000000h", Duration(hours=1_000_000)),
    ],
)
def test_durations_restic_accepts(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1", "no unit found after number 1"),
        ("d", "no number found"),
        ("1w", "invalid unit 'w'"),
        ("1D", "invalid unit 'D'"),
        ("1 d", "invalid unit ' '"),
        ("1d 2h", "invalid unit ' '|no number found"),
        ("1.5d", "invalid unit '.'"),
        ("+1d", "signs are not allowed"),
        ("-1d", "signs are not allowed"),  # restic takes it (meaning: after the newest); we do not
        ("1h-1d", "signs are not allowed"),
        ("\uff11d", "only ASCII digits"),  # restic panics on a fullwidth digit
        ("\x1c1d", "no number found"),  # not a Go space, though Python's isspace says so
        ("1000001d", "too large"),
        ("99999999999999999999d", "too large"),  # restic panics
    ],
)
def test_durations_restic_refuses_or_we_do(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as error:
        parse_duration(text)
    assert "y (years), m (MONTHS), d (days), h (hours)" in str(error.value)


def test_durations_print_in_restics_canonical_order() -> None:
    assert str(Duration(1, 5, 7, 2)) == "1y5m7d2h"
    assert str(Duration(hours=3, years=2)) == "2y3h"
    assert str(Duration()) == ""


@given(durations)
def test_a_duration_parses_back_from_its_spelling(duration: Duration) -> None:
    assert parse_duration(str(duration)) == duration
    assert duration.is_zero() == (str(duration) == "")


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        parse_duration(text)
    except ValueError as error:
        assert "allowed" in str(error) or "use numbers" in str(error)


# ---------------------------------------------------------------------------------------------------------
# Go's AddDate


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "ymd", "expected"),
    [
        (_utc(2023, 3, 31, 12), (0, -1, 0), _utc(2023, 3, 3, 12)),  # "February 31" = March 3
        (_utc(2024, 3, 31, 12), (0, -1, 0), _utc(2024, 3, 2, 12)),  # leap year: March 2
        (_utc(2023, 5, 31), (0, -1, 0), _utc(2023, 5, 1)),  # "April 31" = May 1
        (_utc(2024, 2, 29), (-1, 0, 0), _utc(2023, 3, 1)),  # "February 29, 2023" = March 1
        (_utc(2024, 2, 29), (1, 0, 0), _utc(2025, 3, 1)),
        (_utc(2023, 1, 31), (0, 1, 0), _utc(2023, 3, 3)),
        (_utc(2020, 12, 31), (0, 2, 0), _utc(2021, 3, 3)),
        (_utc(2024, 1, 15, 7, 8, 9), (0, -13, 0), _utc(2022, 12, 15, 7, 8, 9)),
        (_utc(2024, 3, 1), (0, 0, -1), _utc(2024, 2, 29)),
        (_utc(2024, 3, 31), (0, -1, -1), _utc(2024, 3, 1)),  # Feb 31 - 1 = Feb 30 = March 1
        (_utc(2024, 3, 31), (0, -1, -31), _utc(2024, 1, 31)),
        (_utc(2000, 1, 1), (-1998, -12, 0), _utc(1, 1, 1)),
    ],
)
def test_go_add_date_normalises(start: datetime, ymd: tuple[int, int, int], expected: datetime) -> None:
    assert go_add_date(start, *ymd) == expected


def test_go_add_date_works_in_utc_and_knows_its_range() -> None:
    plus_five = timezone(timedelta(hours=5))
    # 2023-04-01 03:00 at +05:00 is March 31, 22:00 UTC.
    assert go_add_date(datetime(2023, 4, 1, 3, tzinfo=plus_five), 0, -1, 0) == _utc(2023, 3, 3, 22)
    with pytest.raises(OverflowError):
        go_add_date(_utc(1, 1, 1), 0, 0, -1)
    with pytest.raises(OverflowError):
        go_add_date(_utc(9999, 12, 31), 0, 1, 0)
    # Out-of-range intermediate months are fine if the day brings the date back.
    assert go_add_date(_utc(9999, 12, 31), 0, 1, -31) == _utc(9999, 12, 31)
    assert Duration(years=5000).before(_utc(2024, 1, 1)) is None  # before year 1: everything is after it
    assert Duration(hours=2).before(_utc(1, 1, 1, 1)) is None


def test_one_month_back_can_be_only_28_days() -> None:
    newest = Checkpoint("new", _utc(2023, 3, 31, 12))
    older = Checkpoint("older", _utc(2023, 3, 3, 11))  # 28 days and 1 hour back
    assert _kept(plan([newest, older], RetentionPolicy(within="1m"))) == {"new"}
    assert _kept(plan([newest, older], RetentionPolicy(within="29d"))) == {"new", "older"}


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(-200, 200),
    st.integers(-300, 300),
    st.integers(-1000, 1000),
)
def test_go_add_date_matches_the_plain_calendar_where_nothing_overflows(
    start: datetime, years: int, months: int, days: int
) -> None:
    result = go_add_date(start, years, months, days)
    month_index = start.year * 12 + start.month - 1 + years * 12 + months
    year, month0 = divmod(month_index, 12)
    if start.day <= 28:
        assert result == start.replace(year=year, month=month0 + 1) + timedelta(days=days)
    # Always: the same time of day, and days shift linearly.
    assert result.time() == start.time()
    assert go_add_date(start, years, months, 0) + timedelta(days=days) == result
