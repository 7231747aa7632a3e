"""How long does the retention engine take to plan over many checkpoints, compared with sorting them?

Builds N checkpoints (default 100,000) an hour or so apart (random gaps of 10 to 110 minutes, about eleven
years in all, a few pinned and branch points), then times ``plan`` with a full GFS policy against the
cheapest thing any planner must do, sorting the same list by time, in the same run::

    python bench/retention.py                 # N = 100,000, best of 5
    python bench/retention.py --n 1000000 --repeat 3
    python bench/retention.py --json          # {"n": ..., "plan_s": ..., "sort_s": ...}

The figures are the best of ``--repeat`` runs each. The target is ``plan`` under 1 s for 100,000; the
ratio plan / sort says how far from "just sorting" the engine is on this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from autovibe.checkpoints.retention import Checkpoint, RetentionPolicy, plan

POLICY = RetentionPolicy(
    last=10,
    hourly=48,
    daily=30,
    weekly=52,
    monthly=24,
    yearly=10,
    within="2d",
    within_daily="30d",
)
NEWEST = datetime(2025, 1, 1, tzinfo=UTC)


def checkpoints(n: int, seed: int = 7) -> list[Checkpoint]:
    rng = random.Random(seed)
    result, t = [], NEWEST
    for index in range(n):
        result.append(
            Checkpoint(
                name=f"ckpt-{index}",
                time=t,
                pinned=rng.random() < 0.001,
                branch_point=rng.random() < 0.001,
            )
        )
        t -= timedelta(seconds=rng.randrange(600, 6600))
    rng.shuffle(result)  # the engine sorts; so does the baseline
    return result


def best_of(repeat: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="checkpoints (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs each, the best counts (default 5)")
    parser.add_argument("--json", action="store_true", help='print {"n", "plan_s", "sort_s"} only')
    options = parser.parse_args()

    items = checkpoints(options.n)
    sort_s = best_of(options.repeat, lambda: sorted(items, key=lambda cp: cp.time, reverse=True))
    plan_s = best_of(options.repeat, lambda: plan(items, POLICY))
    kept = sum(decision.keep for decision in plan(items, POLICY))

    if options.json:
        print(json.dumps({"n": options.n, "plan_s": round(plan_s, 4), "sort_s": round(sort_s, 4)}))
        return 0
    print(f"checkpoints:   {options.n:,} (kept {kept:,})")
    print(f"policy:        {POLICY.describe()}")
    print(f"sort by time:  {sort_s * 1000:8.1f} ms  (best of {options.repeat})")
    print(f"plan:          {plan_s * 1000:8.1f} ms  ({plan_s / sort_s:.1f}x sorting)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
