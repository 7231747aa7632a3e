#!/usr/bin/env python3
"""Generate the retention oracle cases in ``tests/cases/retention`` with the real ``restic`` (0.14.0).

Usage (from the repository root; needs ``restic`` on PATH; about three minutes on two cores)::

    python scripts/gen_retention_cases.py [--out DIR] [--seed N] [--count N] [--workers N] [--keep-repo DIR]

How: one throw-away restic repository gets a pool of some 500 snapshots of a tiny file, each made with
``restic backup --time "YYYY-MM-DD HH:MM:SS" --tag s<N> --host h`` under ``TZ=UTC``, in several time
"families" (minutes over two days, hours over weeks, days over months, weeks over years, months over
decades, ISO-week year ends, exact month-end and leap-day boundaries, and a few in 2099, i.e. in the
future). A case is a seeded random subset of one or two families, a random policy and some pinned and
branch-point checkpoints; restic decides it with

    restic forget --no-lock --dry-run --json --group-by '' --tag s3 --tag s17 ... --keep-tag s17 --keep-...

(repeated ``--tag`` is an OR filter, and each pinned or protected branch point is one ``--keep-tag``,
which keeps without using up counts, exactly like pinning). An empty policy is not passed any
``--keep-tag`` (restic would then remove everything else; autovibe keeps all). Snapshot ids are mapped
back to names through their ``s<N>`` tag.

Each case is ``DIR/<NNNN>/case.json``: ``family``, ``policy`` (RetentionPolicy field names, durations as
given to restic, not necessarily canonical), optional ``now`` (only for cases with future checkpoints),
``checkpoints`` (name, ISO time, ``pinned``/``branch_point`` when true; shuffled), ``kept`` (name ->
restic's reasons in autovibe's words, newest first) and ``removed`` (names, newest first). The output is
deterministic for a given seed: ``now`` is the fixed ``NOW``, equivalent to restic's real clock because
every pool time lies either before it or in 2099 (checked at run time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "cases" / "retention"
NOW = datetime(2025, 6, 1, tzinfo=UTC)  # stored ``now``: after every past pool time, before 2099
COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHINS = ("within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")
WORDS = COUNTS + WITHINS

Snapshot = tuple[str, datetime]  # (name = its tag, UTC time)


# ---------------------------------------------------------------------------------------------------------
# restic


def restic_env(repo: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RESTIC_")}
    env.update(
        TZ="UTC",
        RESTIC_REPOSITORY=str(repo / "repo"),
        RESTIC_PASSWORD="retention-oracle",  # a throw-away local test repository
        RESTIC_CACHE_DIR=str(repo / "cache"),
    )
    return env


def init_repo(workdir: Path) -> dict[str, str]:
    """A fresh restic repository under ``workdir`` and a tiny backup source; returns the environment."""
    env = restic_env(workdir)
    (workdir / "source").mkdir(parents=True, exist_ok=True)
    (workdir / "source" / "file").write_text("checkpoint\n")
    subprocess.run(["restic", "init", "--quiet"], env=env, check=True, capture_output=True)
    return env


def backup(env: Mapping[str, str], workdir: Path, snapshots: Iterable[Snapshot], workers: int = 4) -> None:
    """One ``restic backup`` per snapshot (in parallel: backups only take a shared lock)."""

    def one(snapshot: Snapshot) -> None:
        name, time = snapshot
        command = ["restic", "backup", "--quiet", "--host", "h", "--tag", name]
        command += ["--time", time.strftime("%Y-%m-%d %H:%M:%S"), str(workdir / "source")]
        subprocess.run(command, env=env, check=True, capture_output=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, snapshots))


def _restic_reasons(match: str, protected: Sequence[str]) -> list[str]:
    if match.startswith("has tags "):
        return list(protected)
    if match.endswith(" snapshot"):  # "last snapshot", "daily snapshot", ...
        return [match.removesuffix(" snapshot")]
    return [match]  # "within 1d2h", "hourly within 2d"


def forget(env: Mapping[str, str], case: Mapping[str, Any]) -> dict[str, Any]:
    """restic's verdict on ``case``: ``{"kept": {name: reasons}, "removed": [names]}``, newest first."""
    policy: dict[str, Any] = case["policy"]
    checkpoints: list[dict[str, Any]] = case["checkpoints"]
    protect = policy.get("protect_branch_points", True)
    protected = {
        cp["name"]: ["pinned"] * cp.get("pinned", False)
        + ["branch point"] * (protect and cp.get("branch_point", False))
        for cp in checkpoints
    }
    command = ["restic", "forget", "--no-lock", "--dry-run", "--json", "--group-by", ""]
    for cp in checkpoints:
        command += ["--tag", cp["name"]]
    flags = [
        ["--keep-" + word.replace("_", "-"), str(policy[word])]
        for word in WORDS
        if policy.get(word) is not None
    ]
    for pair in flags:
        command += pair
    # Pinned checkpoints are --keep-tag, but only for a policy restic does not consider empty (see above).
    if any(_restic_sets(word, policy[word]) for word in WORDS if policy.get(word) is not None):
        for name, reasons in protected.items():
            if reasons:
                command += ["--keep-tag", name]
    result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    newest_first = sorted(checkpoints, key=lambda cp: cp["time"], reverse=True)
    if not any(_restic_sets(word, policy[word]) for word in WORDS if policy.get(word) is not None):
        # restic: "no policy was specified, no snapshots will be removed" (with --json: no output at all)
        if result.stdout.strip():
            raise RuntimeError(f"restic applied an empty policy: {result.stdout[:200]}")
        return {"kept": {cp["name"]: ["policy is empty"] for cp in newest_first}, "removed": []}
    groups = json.loads(result.stdout)
    if len(groups) != 1:
        raise RuntimeError(f"expected one group, got {len(groups)}")
    group = groups[0]
    kept: dict[str, list[str]] = {}
    for reason in group["reasons"] or []:
        (name,) = reason["snapshot"]["tags"]
        kept[name] = [word for match in reason["matches"] for word in _restic_reasons(match, protected[name])]
    kept_names = [snapshot["tags"][0] for snapshot in group["keep"] or []]
    if kept_names != list(kept):
        raise RuntimeError(f"reasons do not match kept snapshots: {kept_names} vs {list(kept)}")
    removed = [snapshot["tags"][0] for snapshot in group["remove"] or []]
    order = [cp["name"] for cp in newest_first]
    if sorted(kept_names + removed) != sorted(order):
        raise RuntimeError("restic did not decide on every checkpoint exactly once")
    return {
        "kept": {name: kept[name] for name in order if name in kept},
        "removed": [name for name in order if name in removed],
    }


def _restic_sets(word: str, value: Any) -> bool:
    """Whether restic takes this flag as set (a zero duration such as ``0d`` is not)."""
    if word in COUNTS:
        return bool(value)
    return any(ch in "123456789" for ch in str(value))


# ---------------------------------------------------------------------------------------------------------
# The pool


def _walk(rng: random.Random, start: datetime, count: int, min_gap: float, max_gap: float) -> list[datetime]:
    """``count`` times from ``start`` on, gaps uniformly random in [min_gap, max_gap] seconds."""
    times, t = [], start
    for _ in range(count):
        times.append(t)
        t += timedelta(seconds=int(rng.uniform(min_gap, max_gap)))
    return times


def build_families(rng: random.Random) -> dict[str, list[datetime]]:
    hour, day = 3600, 86400
    families = {
        "minutes": _walk(rng, datetime(2021, 6, 14, 7, 3, 11, tzinfo=UTC), 70, 60, 90 * 60),
        "hours": _walk(rng, datetime(2021, 4, 27, 1, 17, 5, tzinfo=UTC), 90, 0.3 * hour, 12 * hour),
        "days": _walk(rng, datetime(2020, 1, 9, 23, 41, 2, tzinfo=UTC), 90, 0.2 * day, 5 * day),
        "weeks": _walk(rng, datetime(2015, 3, 2, 12, 0, 9, tzinfo=UTC), 90, 2 * day, 30 * day),
        "years": _walk(rng, datetime(1999, 7, 30, 18, 30, 1, tzinfo=UTC), 60, 20 * day, 250 * day),
    }
    # ISO weeks around year ends, including years with a week 53 (2015, 2020) and Jan 1 in week 52/53.
    year_ends = []
    for year in (2014, 2015, 2018, 2020, 2021, 2022):
        base = datetime(year, 12, 26, tzinfo=UTC)
        year_ends += [base + timedelta(seconds=rng.randrange(0, 11 * day)) for _ in range(9)]
    families["year_ends"] = sorted(year_ends)
    # Exact month-end, leap-day and threshold instants (Go's AddDate normalises rather than clamps).
    families["march_end"] = [
        datetime(2024, 3, 31, 12, 0, 0, tzinfo=UTC),  # the newest
        datetime(2024, 3, 31, 10, 0, 0, tzinfo=UTC),  # = newest - 2h
        datetime(2024, 3, 30, 12, 0, 0, tzinfo=UTC),  # = newest - 1d
        datetime(2024, 3, 30, 10, 0, 0, tzinfo=UTC),  # = newest - 1d2h
        datetime(2024, 3, 3, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 3, 2, 12, 0, 0, tzinfo=UTC),  # = newest - 1m (Feb 31 = Mar 2 in 2024)
        datetime(2024, 3, 2, 11, 59, 59, tzinfo=UTC),
        datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC),  # = newest - 1m1d
        datetime(2024, 2, 29, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 2, 28, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC),  # = newest - 2m (Jan 31)
        datetime(2023, 3, 31, 12, 0, 0, tzinfo=UTC),  # = newest - 1y
        datetime(2023, 3, 31, 12, 0, 1, tzinfo=UTC),
        datetime(2022, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    families["may_end"] = [
        datetime(2023, 5, 31, 6, 0, 0, tzinfo=UTC),  # the newest
        datetime(2023, 5, 1, 6, 0, 0, tzinfo=UTC),  # = newest - 1m (Apr 31 = May 1)
        datetime(2023, 5, 1, 6, 0, 1, tzinfo=UTC),
        datetime(2023, 4, 30, 6, 0, 0, tzinfo=UTC),
        datetime(2023, 4, 1, 6, 0, 0, tzinfo=UTC),  # = newest - 2m (Mar 31 + 1d)
        datetime(2023, 3, 31, 6, 0, 0, tzinfo=UTC),
        datetime(2023, 3, 3, 6, 0, 0, tzinfo=UTC),  # = newest - 3m (Feb 31 = Mar 3 in 2023)
        datetime(2023, 2, 28, 6, 0, 0, tzinfo=UTC),
        datetime(2022, 5, 31, 6, 0, 0, tzinfo=UTC),  # = newest - 1y
        datetime(2022, 5, 31, 5, 59, 59, tzinfo=UTC),
    ]
    families["leap_day"] = [
        datetime(2024, 2, 29, 23, 0, 0, tzinfo=UTC),  # the newest
        datetime(2024, 2, 28, 23, 0, 0, tzinfo=UTC),  # = newest - 1d
        datetime(2024, 1, 29, 23, 0, 0, tzinfo=UTC),  # = newest - 1m
        datetime(2023, 3, 1, 23, 0, 0, tzinfo=UTC),  # = newest - 1y (Feb 29 2023 = Mar 1)
        datetime(2023, 3, 1, 23, 0, 1, tzinfo=UTC),
        datetime(2023, 2, 28, 23, 0, 0, tzinfo=UTC),
        datetime(2020, 2, 29, 23, 0, 0, tzinfo=UTC),  # = newest - 4y
        datetime(2020, 2, 29, 23, 0, 1, tzinfo=UTC),
        datetime(2019, 3, 1, 23, 0, 0, tzinfo=UTC),
    ]
    families["future"] = [
        datetime(2099, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(400 * day)) for _ in range(8)
    ]
    families["future"].sort()
    return families


SPANS_HOURS = {
    "minutes": 60,
    "hours": 600,
    "days": 4000,
    "weeks": 24 * 900,
    "years": 24 * 8000,
    "year_ends": 24 * 3000,
    "march_end": 24 * 460,
    "may_end": 24 * 370,
    "leap_day": 24 * 1500,
    "future": 24 * 400,
}
BOUNDARY_DURATIONS = ["2h", "1d", "1d2h", "1m", "1m1d", "2m", "3m", "1y", "4y", "25h", "30d", "1y1d"]


# ---------------------------------------------------------------------------------------------------------
# Cases


def _duration(rng: random.Random, span_hours: float, boundary: bool) -> str:
    if boundary and rng.random() < 0.7:
        return rng.choice(BOUNDARY_DURATIONS)
    hours = max(1, int(span_hours * rng.uniform(0.02, 1.1)))
    style = rng.choice(["h", "dh", "d", "md", "m", "ymd", "y"])
    years, rest = divmod(hours, 24 * 365) if "y" in style else (0, hours)
    months, rest = divmod(rest, 24 * 30) if "m" in style else (0, rest)
    days, rest = divmod(rest, 24) if "d" in style else (0, rest)
    parts = {"y": years, "m": months, "d": days, "h": rest if "h" in style else 0}
    used = [(unit, number) for unit, number in parts.items() if unit in style]
    if not any(number for _, number in used):  # e.g. style "y" for a span shorter than a year
        used = [("h", hours)]
    if rng.random() < 0.2:  # restic accepts units in any order and explicit zeros
        rng.shuffle(used)
    text = "".join(f"{number}{unit}" for unit, number in used if number or rng.random() < 0.3)
    return text or "1d"


def _policy(rng: random.Random, family: str, size: int, forced: str | None) -> dict[str, Any]:
    words = set(rng.sample(WORDS, rng.choice([1, 1, 2, 2, 3, 4, 6])))
    if forced:
        words.add(forced)
    policy: dict[str, Any] = {}
    boundary = family in ("march_end", "may_end", "leap_day")
    for word in WORDS:
        if word not in words:
            continue
        if word in COUNTS:
            policy[word] = 1 + int(max(size, 2) * rng.random() ** 2)
        else:
            policy[word] = _duration(rng, SPANS_HOURS[family], boundary)
    return policy


def make_cases(rng: random.Random, families: dict[str, list[Snapshot]], count: int) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    plain = ["minutes", "hours", "days", "weeks", "years", "year_ends"]
    boundary = ["march_end", "may_end", "leap_day"]
    for index in range(count):
        forced = WORDS[index % len(WORDS)] if index < 3 * len(WORDS) else None
        roll = rng.random()
        if index in (5, 6):
            family, pool = "days", families["days"]
        elif roll < 0.55:
            family = rng.choice(plain)
            pool = families[family]
        elif roll < 0.75:
            family = rng.choice(boundary)
            pool = families[family]
        elif roll < 0.88:
            first, second = rng.sample(plain, 2)
            family, pool = f"{first}+{second}", families[first] + families[second]
        elif roll < 0.96:
            base = rng.choice(plain + boundary)
            family, pool = f"{base}+future", families[base] + families["future"]
        else:
            family, pool = "future", families["future"]
        span_family = family.split("+")[0]
        if family.endswith("+future") and rng.random() < 0.5:
            span_family = "future"
        size = rng.randint(1, len(pool)) if rng.random() < 0.3 else rng.randint(2, min(len(pool), 40))
        if span_family in boundary:
            size = len(pool) if rng.random() < 0.6 else rng.randint(2, len(pool))
        chosen = rng.sample(pool, size)
        if index in (5, 6):
            policy: dict[str, Any] = {} if index == 5 else {"within": "0d", "daily": 0}
        else:
            policy = _policy(rng, span_family, size, forced)
        if rng.random() < 0.25:
            policy["protect_branch_points"] = rng.random() < 0.5
        pinned = set(rng.sample([name for name, _ in chosen], min(size, rng.choice([0, 0, 1, 2, 4]))))
        branch = set(rng.sample([name for name, _ in chosen], min(size, rng.choice([0, 0, 1, 3]))))
        checkpoints = []
        for name, time in chosen:
            checkpoint: dict[str, Any] = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if name in pinned:
                checkpoint["pinned"] = True
            if name in branch:
                checkpoint["branch_point"] = True
            checkpoints.append(checkpoint)
        case: dict[str, Any] = {"family": family, "policy": policy}
        if any(time >= NOW for _, time in chosen):
            case["now"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
        case["checkpoints"] = checkpoints
        cases.append(case)
    return cases


def case_json(case: Mapping[str, Any]) -> str:
    """Compact and diff-friendly: one checkpoint, and one kept checkpoint, per line."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(", ", ": "))

    lines = []
    for key, value in case.items():
        if key == "checkpoints":
            lines.append(' "checkpoints": [\n' + ",\n".join(f"  {dump(cp)}" for cp in value) + "\n ]")
        elif key == "kept" and value:
            items = ",\n".join(f"  {dump(name)}: {dump(reasons)}" for name, reasons in value.items())
            lines.append(' "kept": {\n' + items + "\n }")
        else:
            lines.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=20240531)
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--keep-repo", type=Path, help="build the pool here and keep it (default: a temp dir)"
    )
    options = parser.parse_args()
    if shutil.which("restic") is None:
        print("restic is not on PATH", file=sys.stderr)
        return 1
    version = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True).stdout.strip()
    print(version, file=sys.stderr)
    real_now = datetime.now(UTC)

    rng = random.Random(options.seed)
    times = build_families(rng)
    every = sorted(time for family in times.values() for time in family)
    if len(set(every)) != len(every):
        raise SystemExit("two pool snapshots share a time; change the seed")
    past = [time for time in every if time < NOW]
    future = [time for time in every if time >= NOW]
    if not (past[-1] < NOW <= real_now < future[0]):
        raise SystemExit("NOW must lie between the past and future pool times and before the real clock")
    names = {time: f"s{number}" for number, time in enumerate(every, start=1)}
    families = {family: [(names[time], time) for time in ts] for family, ts in times.items()}
    cases = make_cases(rng, families, options.count)
    time_of = {name: time for family in families.values() for name, time in family}
    needed = [
        (name, time_of[name]) for name in sorted({cp["name"] for c in cases for cp in c["checkpoints"]})
    ]

    workdir = options.keep_repo or Path(tempfile.mkdtemp(prefix="retention-oracle-"))
    try:
        if (workdir / "repo").exists():  # --keep-repo from an earlier run: add only what is missing
            env = restic_env(workdir)
            listed = subprocess.run(
                ["restic", "snapshots", "--no-lock", "--json"], env=env, check=True, capture_output=True
            )
            have = {snap["tags"][0]: snap["time"] for snap in json.loads(listed.stdout)}
            for name, time in needed:
                if have.get(name) not in (None, time.strftime("%Y-%m-%dT%H:%M:%SZ")):
                    raise SystemExit(f"{workdir} holds another {name}: it was built with another seed")
            needed = [(name, time) for name, time in needed if name not in have]
        else:
            env = init_repo(workdir)
        print(f"backing up {len(needed)} snapshots in {workdir} ...", file=sys.stderr)
        backup(env, workdir, needed, options.workers)
        print(f"asking restic about {len(cases)} cases ...", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            verdicts = list(pool.map(lambda case: forget(env, case), cases))
    finally:
        if options.keep_repo is None:
            shutil.rmtree(workdir, ignore_errors=True)

    if options.out.exists():
        for old in options.out.iterdir():
            if old.is_dir() and old.name.isdigit():
                shutil.rmtree(old)
    for number, (case, verdict) in enumerate(zip(cases, verdicts, strict=True), start=1):
        folder = options.out / f"{number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "case.json").write_text(case_json({**case, **verdict}))
    kept = sum(len(v["kept"]) for v in verdicts)
    removed = sum(len(v["removed"]) for v in verdicts)
    print(f"wrote {len(cases)} cases to {options.out}: {kept} kept, {removed} removed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
