"""The checkpoint retention policy engine: what a policy keeps, decided exactly as ``restic forget`` does.

Pure: no I/O, stdlib and pydantic only. The semantics are those of restic 0.14.0's ``forget`` (Debian 12's
package, the oracle the cases in ``tests/cases/retention`` were generated with), with pinned checkpoints in
the role of ``--keep-tag`` and all checkpoints in one group (``--group-by ''``):

* Checkpoints are sorted newest first (stable). An empty policy keeps everything ("policy is empty").
* ``latest`` is the newest checkpoint time; with ``now`` given, checkpoints at or after ``now`` do not count
  for it (restic 0.14 ignores snapshots "in the future"; if every checkpoint is, ``latest`` is Go's zero
  time, so every ``within`` rule matches everything).
* Pinned checkpoints (and branch points, unless ``protect_branch_points`` is off) are kept without using up
  any count; they still go through every rule below, like every other checkpoint.
* ``within D``: kept if its time is strictly after ``latest`` minus D, computed like Go's
  ``t.AddDate(-y, -m, -d).Add(-h hours)``: the date is normalised, not clamped (March 31 minus one month is
  March 3, or March 2 in a leap year).
* Counted buckets ``last``/``hourly``/``daily``/``weekly``/``monthly``/``yearly`` with keys unique/YYYYMMDDHH/
  YYYYMMDD/ISO year+week/YYYYMM/YYYY: while a bucket has counts left, a checkpoint whose key differs from
  the key the bucket last kept is kept and uses up one count. restic 0.14 has neither ``-1`` ("all") nor the
  later "also keep the oldest snapshot" rule; it accepts ``-1`` but then keeps nothing for it, so negative
  counts are refused here.
* ``within_<bucket> D``: among checkpoints within D of ``latest``, keep one per key (no count).

Bucket keys and date arithmetic use UTC; restic uses each snapshot's recorded zone, which is the same when
restic runs with ``TZ=UTC`` (as the oracle did).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Annotated, Any, Final, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "Checkpoint",
    "CheckpointLike",
    "Decision",
    "Duration",
    "RetentionPolicy",
    "go_add_date",
    "parse_duration",
    "plan",
]

# restic's Go code accepts any int64 (and panics beyond); these bounds keep every figure meaningful and
# clear of Go's int64 nanosecond overflow in ``time.Duration(-h) * time.Hour`` (about 2.56 million hours).
MAX_DURATION_NUMBER: Final = 1_000_000
DURATION_HELP: Final = (
    "use numbers followed by units y (years), m (MONTHS), d (days), h (hours), e.g. '1y5m7d2h' or '3d12h'; "
    f"numbers are 0 to {MAX_DURATION_NUMBER}, no signs, spaces or fractions"
)
_GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)  # Go's time.Time{} (year 1, UTC)
_UNIX_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


# ---------------------------------------------------------------------------------------------------------
# Durations, parsed like restic.ParseDuration and applied like Go's AddDate


@dataclass(frozen=True, slots=True)
class Duration:
    """restic's ``Duration``: years, months, days and hours, each applied by calendar, not as seconds."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        """restic's canonical spelling: ``1y5m7d2h``, zero parts left out, ``""`` for zero."""
        parts = ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
        return "".join(f"{number}{unit}" for number, unit in parts if number)

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, t: datetime) -> datetime | None:
        """``t`` minus this duration, like Go's ``t.AddDate(-y, -m, -d).Add(-h * time.Hour)``, in UTC.

        ``None`` when the result lies before year 1 (Python's smallest datetime): every checkpoint is then
        strictly after it.
        """
        try:
            return go_add_date(t, -self.years, -self.months, -self.days) - timedelta(hours=self.hours)
        except OverflowError:
            return None


def _is_go_space(char: str) -> bool:
    # Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.isspace also takes \x1c-\x1f).
    return char in "\t\n\v\f\r \x85\xa0" or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def _trim_go_space(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_go_space(text[start]):
        start += 1
    while end > start and _is_go_space(text[end - 1]):
        end -= 1
    return text[start:end]


@lru_cache(maxsize=256)
def parse_duration(text: str) -> Duration:
    """Parse restic's duration syntax (``6y5m234d37h``), as restic 0.14's ``ParseDuration`` does.

    Surrounding whitespace is ignored, units may come in any order and a repeated unit overrides the
    earlier one (restic's behaviour); ``""`` and ``"0d"`` are the zero duration. Refused with a
    ``ValueError`` saying what is allowed: a number without unit (``"3"``), a unit without number
    (``"d"``), unknown units (``"1w"``, ``"1D"``), inner spaces, fractions, and, unlike restic, signs
    (restic takes ``-1d`` to mean "after the newest") and numbers above ``MAX_DURATION_NUMBER`` (restic
    panics on numbers beyond 64 bits).
    """
    rest = _trim_go_space(text)
    values = {"y": 0, "m": 0, "d": 0, "h": 0}
    while rest:
        digits = 0
        while digits < len(rest) and rest[digits] in "0123456789":
            digits += 1
        if digits == 0:
            if rest[0] in "+-":
                problem = f"signs are not allowed ({rest[0]!r})"
            elif rest[0].isdigit() or rest[0].isnumeric():
                problem = f"only ASCII digits are allowed, not {rest[0]!r}"
            else:
                problem = f"no number found before {rest[0]!r}"
            raise ValueError(f"invalid duration {text!r}: {problem}; {DURATION_HELP}")
        number = int(rest[:digits])
        if digits == len(rest):
            raise ValueError(
                f"invalid duration {text!r}: no unit found after number {number}; {DURATION_HELP}"
            )
        unit = rest[digits]
        if unit not in values:
            raise ValueError(
                f"invalid duration {text!r}: invalid unit {unit!r} after number {number}; {DURATION_HELP}"
            )
        if number > MAX_DURATION_NUMBER:
            raise ValueError(f"invalid duration {text!r}: {number} is too large; {DURATION_HELP}")
        values[unit] = number
        rest = rest[digits + 1 :]
    return Duration(years=values["y"], months=values["m"], days=values["d"], hours=values["h"])


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Proleptic Gregorian date -> Python ordinal (0001-01-01 is 1), for any year (Howard Hinnant)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + _UNIX_EPOCH_ORDINAL


def go_add_date(t: datetime, years: int, months: int, days: int) -> datetime:
    """Go's ``t.AddDate(years, months, days)`` on ``t`` in UTC: out-of-range months and days normalise.

    Go builds ``time.Date(y+years, m+months, d+days, ...)``: the month overflows into the year, then the
    day counts on from the first of that month, so 2023-03-31 minus one month is "February 31" = March 3
    (dateutil's relativedelta would clamp to February 28). Raises ``OverflowError`` when the result is
    outside Python's years 1 to 9999. ``t`` must be aware.
    """
    utc = t.astimezone(UTC)
    month0 = utc.month - 1 + months
    year = utc.year + years + month0 // 12
    ordinal = _days_from_civil(year, month0 % 12 + 1, 1) + utc.day - 1 + days
    if not date.min.toordinal() <= ordinal <= date.max.toordinal():
        raise OverflowError(f"date out of range: {t.isoformat()} {years:+}y{months:+}m{days:+}d")
    return utc + timedelta(days=ordinal - utc.toordinal())


# ---------------------------------------------------------------------------------------------------------
# The policy


def _count(value: int) -> int:
    if value < 0:
        raise ValueError(
            "a keep count must be 0 (not used) or positive; restic 0.14 has no -1 for 'keep all' "
            "(it accepts -1 but then keeps nothing)"
        )
    return value


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"a duration must be a string such as '3d12h'; {DURATION_HELP}")
    duration = parse_duration(value)
    return None if duration.is_zero() else str(duration)


Count = Annotated[int, Field(strict=True), AfterValidator(_count)]
DurationText = Annotated[str | None, BeforeValidator(_duration)]

_COUNTS: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_WITHINS: Final = ("within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")


class RetentionPolicy(BaseModel):
    """Which checkpoints to keep: restic's ``forget --keep-*`` options plus branch-point protection.

    Counts are 0 (not used) or positive. Durations are restic strings (``"1y5m7d2h"``; ``m`` is months),
    stored in restic's canonical spelling (``"2h1d"`` becomes ``"1d2h"``); zero durations become ``None``.
    Pinned checkpoints are always kept, and so are branch points while ``protect_branch_points`` is on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    last: Count = 0
    hourly: Count = 0
    daily: Count = 0
    weekly: Count = 0
    monthly: Count = 0
    yearly: Count = 0
    within: DurationText = None
    within_hourly: DurationText = None
    within_daily: DurationText = None
    within_weekly: DurationText = None
    within_monthly: DurationText = None
    within_yearly: DurationText = None
    protect_branch_points: bool = Field(default=True, strict=True)

    def is_empty(self) -> bool:
        """True when no count and no duration is set: such a policy keeps every checkpoint."""
        return not any(getattr(self, field) for field in (*_COUNTS, "within", *_WITHINS))

    def flags(self) -> list[str]:
        """The equivalent ``restic forget`` flags, e.g. ``["--keep-last", "3", "--keep-within", "3d12h"]``."""
        words: list[str] = []
        for field in (*_COUNTS, "within", *_WITHINS):
            value = getattr(self, field)
            if value:
                words += ["--keep-" + field.replace("_", "-"), str(value)]
        return words

    def describe(self) -> str:
        """A sentence in restic's words, e.g. "keep 3 latest, 7 daily checkpoints and all checkpoints
        within 3d12h of the newest; pinned checkpoints and branch points are always kept"."""
        always = (
            "pinned checkpoints and branch points are always kept"
            if self.protect_branch_points
            else "pinned checkpoints are always kept (branch points are not protected)"
        )
        if self.is_empty():
            return f"keep all checkpoints (the policy is empty); {always}"
        counts = [
            f"{value} {'latest' if field == 'last' else field}"
            for field in _COUNTS
            if (value := getattr(self, field))
        ]
        text = f"{', '.join(counts)} checkpoints" if counts else ""
        windows = [
            f"{field.removeprefix('within_')} checkpoints within {value}"
            for field in _WITHINS
            if (value := getattr(self, field))
        ]
        text = ", ".join(part for part in (text, *windows) if part)
        if self.within:
            text += f"{' and ' if text else ''}all checkpoints within {self.within} of the newest"
        return f"keep {text}; {always}"


# ---------------------------------------------------------------------------------------------------------
# Inputs and outputs


class CheckpointLike(Protocol):
    """What ``plan`` reads from a checkpoint; any record with these attributes will do."""

    @property
    def name(self) -> str: ...
    @property
    def time(self) -> datetime | None: ...
    @property
    def pinned(self) -> bool: ...
    @property
    def branch_point(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint as the engine sees it. ``time`` must be timezone-aware."""

    name: str
    time: datetime
    pinned: bool = False
    branch_point: bool = False

    def __post_init__(self) -> None:
        _check_time(self.name, self.time)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to keep one checkpoint, and why (restic's "matches"); ``reasons`` is ``()`` when removed."""

    name: str
    keep: bool
    reasons: tuple[str, ...]


def _check_time(name: str, time: object) -> datetime:
    if not isinstance(time, datetime):
        raise ValueError(f"checkpoint {name!r} has no time (got {time!r}); retention needs one")
    if time.utcoffset() is None:
        raise ValueError(f"checkpoint {name!r} has a naive time {time.isoformat()}; give it a timezone")
    return time


# ---------------------------------------------------------------------------------------------------------
# The engine


def _hour_key(t: datetime) -> int:
    return ((t.year * 100 + t.month) * 100 + t.day) * 100 + t.hour


def _day_key(t: datetime) -> int:
    return (t.year * 100 + t.month) * 100 + t.day


def _week_key(t: datetime) -> int:
    year, week, _ = t.isocalendar()
    return year * 100 + week


def _month_key(t: datetime) -> int:
    return t.year * 100 + t.month


def _year_key(t: datetime) -> int:
    return t.year


_BUCKET_KEYS: Final[dict[str, Callable[[datetime], int]]] = {
    "hourly": _hour_key,
    "daily": _day_key,
    "weekly": _week_key,
    "monthly": _month_key,
    "yearly": _year_key,
}


class _Counted:
    __slots__ = ("count", "key", "last", "reason")

    def __init__(self, count: int, key: Callable[[datetime], int], reason: str) -> None:
        self.count, self.key, self.last, self.reason = count, key, -1, reason


class _Window:
    __slots__ = ("key", "last", "reason", "since")

    def __init__(self, since: datetime | None, key: Callable[[datetime], int], reason: str) -> None:
        self.since, self.key, self.last, self.reason = since, key, -1, reason


def plan(
    checkpoints: Iterable[CheckpointLike], policy: RetentionPolicy, *, now: datetime | None = None
) -> list[Decision]:
    """Decide for every checkpoint whether ``policy`` keeps it; the decisions come newest first.

    ``now`` (aware) only matters for checkpoints at or after it: like restic, they are ignored when finding
    the newest checkpoint that ``within`` rules count back from. Raises ``ValueError`` for a checkpoint
    without a time or with a naive one, for two checkpoints with the same name, and for a naive ``now``.
    """
    rows: list[tuple[datetime, str, bool, bool]] = []
    names: set[str] = set()
    protect = policy.protect_branch_points
    for checkpoint in checkpoints:
        name = checkpoint.name
        time = checkpoint.time
        if time.__class__ is not datetime or time.tzinfo is not UTC:  # the fast path: UTC datetimes
            time = _check_time(name, time).astimezone(UTC)
        if name in names:
            raise ValueError(f"two checkpoints are named {name!r}; names must be unique")
        names.add(name)
        rows.append((time, name, bool(checkpoint.pinned), protect and bool(checkpoint.branch_point)))
    # Newest first, stable for equal times (Python's sort stays stable with reverse=True), like sort.Stable.
    rows.sort(key=itemgetter(0), reverse=True)

    if policy.is_empty():
        return [Decision(row[1], True, ("policy is empty",)) for row in rows]
    if not rows:
        return []

    if now is None:
        latest = rows[0][0]
    else:
        _check_time("now", now)
        latest = _GO_ZERO_TIME  # Go's zero time: what restic uses when every snapshot is in the future
        for time, *_ in rows:
            if latest < time < now:
                latest = time
                break  # rows are sorted: the first one before ``now`` is the newest

    last = policy.last  # restic's "last" bucket: a key unique per checkpoint, so the first ``last`` ones
    counted: list[_Counted] = []
    for field, key in _BUCKET_KEYS.items():
        if count := getattr(policy, field):
            counted.append(_Counted(count, key, field))
    windows: list[_Window] = []
    for field in _WITHINS:
        if text := getattr(policy, field):
            since = parse_duration(text).before(latest)
            kind = field.removeprefix("within_")
            windows.append(_Window(since, _BUCKET_KEYS[kind], f"{kind} within {text}"))
    within_since: datetime | None = None
    within_active = False
    within_reason = ""
    if policy.within:
        within_active = True
        within_since = parse_duration(policy.within).before(latest)
        within_reason = f"within {policy.within}"

    decisions: list[Decision] = []
    append = decisions.append
    for nr, (time, name, pinned, branch_point) in enumerate(rows):
        reasons: list[str] = []
        if pinned:
            reasons.append("pinned")
        if branch_point:
            reasons.append("branch point")
        if within_active:
            # Rows are sorted newest first, so once one is outside the window all later ones are too.
            if within_since is None or time > within_since:
                reasons.append(within_reason)
            else:
                within_active = False
        if nr < last:
            reasons.append("last")
        if counted:
            exhausted = False
            for bucket in counted:
                value = bucket.key(time)
                if value != bucket.last:
                    bucket.last = value
                    bucket.count -= 1
                    exhausted = exhausted or bucket.count == 0
                    reasons.append(bucket.reason)
            if exhausted:
                counted = [bucket for bucket in counted if bucket.count]
        if windows:
            closed = False
            for window in windows:
                if window.since is None or time > window.since:
                    value = window.key(time)
                    if value != window.last:
                        window.last = value
                        reasons.append(window.reason)
                else:
                    closed = True
            if closed:
                windows = [w for w in windows if w.since is None or time > w.since]
        append(Decision(name, True, tuple(reasons)) if reasons else Decision(name, False, ()))
    return decisions
