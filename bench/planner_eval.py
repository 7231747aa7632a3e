"""How often does the offline planner produce exactly the expected plan?

Replays every case in tests/cases/nl_plans/ (a request, a planning context, the expected actions or
a clarification) through ``autovibe.ai.planners.offline.plan_request`` and counts exact matches:
the same actions with the same parameters, in order; explanation, assumptions and the wording of a
clarification question do not count, only whether there is one::

    python bench/planner_eval.py          # a table of the cases, misses first
    python bench/planner_eval.py --json   # {"cases": N, "exact": K, "score": K/N}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from autovibe.ai.plan import Plan
from autovibe.ai.planners.base import InventoryMachine, PlanningContext
from autovibe.ai.planners.offline import plan_request

CASES_DIR = Path(__file__).resolve().parents[1] / "tests" / "cases" / "nl_plans"


def _context(data: dict[str, Any]) -> PlanningContext:
    return PlanningContext(
        projects=tuple(data.get("projects", ())),
        profiles=tuple(data.get("profiles", ())),
        network_profiles=tuple(data.get("network_profiles", ())),
        machines=tuple(InventoryMachine(**m) for m in data.get("machines", ())),
        default_project=data.get("default_project"),
    )


def _shape(plan: Plan) -> list[dict[str, Any]] | None:
    return None if plan.clarification else [a.model_dump(mode="json") for a in plan.actions]


def evaluate() -> list[tuple[str, str, bool, str]]:
    """One row per case: (case, request, exact, what the planner did)."""
    rows = []
    for path in sorted(CASES_DIR.glob("*.json")):
        case = json.loads(path.read_text())
        expected = case["expected"]
        wanted = None if expected.get("clarification") else _shape(Plan.model_validate(expected))
        plan = plan_request(case["request"], _context(case["context"]))
        got = _shape(plan)
        did = "clarify" if got is None else ", ".join(a["kind"] for a in got) or "(no actions)"
        rows.append((path.stem, case["request"], got == wanted, did))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the summary as JSON")
    options = parser.parse_args()
    rows = evaluate()
    exact = sum(ok for _, _, ok, _ in rows)
    summary = {"cases": len(rows), "exact": exact, "score": round(exact / len(rows), 4) if rows else 0.0}
    if options.json:
        print(json.dumps(summary))
        return 0
    width = min(60, max((len(r[1]) for r in rows), default=10))
    for stem, request, ok, did in sorted(rows, key=lambda r: (r[2], r[0])):
        text = request if len(request) <= width else request[: width - 3] + "..."
        print(f"{stem}  {'ok  ' if ok else 'MISS'}  {text:<{width}}  {did}")
    print(f"\n{exact}/{len(rows)} exact ({summary['score']:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
