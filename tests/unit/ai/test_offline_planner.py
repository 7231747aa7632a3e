"""The offline planner replayed over tests/cases/nl_plans/<NNN>.json.

A case gives a ``request``, a ``context`` (the :class:`PlanningContext` fields, machines as objects)
and ``expected``: either ``{"clarification": true}`` or ``{"actions": [...]}`` with each action's kind
and the parameters that differ from the defaults. Actions compare equal as validated plan actions;
explanation, assumptions and the clarification's wording do not count. ``tags`` mark ``vague`` and
``injection`` cases for the stricter checks below.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from autovibe.ai.plan import ACTION_KINDS, DESTRUCTIVE, Plan
from autovibe.ai.planners.base import InventoryMachine, PlanningContext
from autovibe.ai.planners.offline import INJECTION_NOTE, OfflinePlanner, plan_request

CASES_DIR = Path(__file__).resolve().parents[2] / "cases" / "nl_plans"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))
MIN_EXACT = 0.90


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _context(data: dict[str, Any]) -> PlanningContext:
    return PlanningContext(
        projects=tuple(data.get("projects", ())),
        profiles=tuple(data.get("profiles", ())),
        network_profiles=tuple(data.get("network_profiles", ())),
        machines=tuple(InventoryMachine(**m) for m in data.get("machines", ())),
        default_project=data.get("default_project"),
    )


def _expected_actions(case: dict[str, Any]) -> list[dict[str, Any]] | None:
    if case["expected"].get("clarification"):
        return None
    plan = Plan.model_validate({"actions": case["expected"]["actions"]})
    return [action.model_dump(mode="json") for action in plan.actions]


def _actual(plan: Plan) -> list[dict[str, Any]] | None:
    if plan.clarification:
        return None
    return [action.model_dump(mode="json") for action in plan.actions]


def _run(case: dict[str, Any]) -> Plan:
    return plan_request(case["request"], _context(case["context"]))


CASES = {path.stem: _load(path) for path in CASE_FILES}


def test_the_case_folder_covers_every_action_kind() -> None:
    assert len(CASES) >= 60
    kinds = {a["kind"] for c in CASES.values() for a in c["expected"].get("actions", [])}
    assert kinds == set(ACTION_KINDS)
    assert sum("vague" in c["tags"] for c in CASES.values()) >= 5
    assert sum("injection" in c["tags"] for c in CASES.values()) >= 5


def test_exact_match_rate() -> None:
    failures = []
    for stem, case in CASES.items():
        actual = _actual(_run(case))
        if actual != _expected_actions(case):
            failures.append(f"{stem}: {case['request']!r} -> {actual}")
    rate = 1 - len(failures) / len(CASES)
    assert rate >= MIN_EXACT, f"exact {rate:.0%} < {MIN_EXACT:.0%}; failing:\n" + "\n".join(failures)


@pytest.mark.parametrize("stem", [s for s, c in CASES.items() if "vague" in c["tags"]])
def test_vague_requests_get_a_question_and_no_actions(stem: str) -> None:
    plan = _run(CASES[stem])
    assert plan.clarification is not None and "?" in plan.clarification
    assert plan.actions == []


@pytest.mark.parametrize("stem", [s for s, c in CASES.items() if "injection" in c["tags"]])
def test_injections_never_widen_destructive_actions(stem: str) -> None:
    case = CASES[stem]
    plan = _run(case)
    assert INJECTION_NOTE in plan.assumptions
    literal = _expected_actions(case) or []
    allowed = [a for a in literal if a["kind"] in DESTRUCTIVE]
    destructive = [a for a in _actual(plan) or [] if a["kind"] in DESTRUCTIVE]
    assert len(destructive) <= len(allowed)
    for action in destructive:
        assert action in allowed, f"{stem}: {action} was not literally requested"


def test_plain_requests_carry_no_injection_note() -> None:
    for stem, case in CASES.items():
        if "injection" not in case["tags"]:
            assert INJECTION_NOTE not in _run(case).assumptions, stem


def test_the_default_project_is_an_assumption() -> None:
    context = PlanningContext(projects=("alpha",), profiles=("hub",), default_project="alpha")
    plan = plan_request("create a hub", context)
    assert plan.actions[0].model_dump()["project"] == "alpha"
    assert any("default" in text for text in plan.assumptions)


def test_the_planner_is_deterministic_and_async() -> None:
    case = next(iter(CASES.values()))
    first = asyncio.run(OfflinePlanner().plan(case["request"], _context(case["context"])))
    second = asyncio.run(OfflinePlanner().plan(case["request"], _context(case["context"])))
    assert first.planner == "offline" and first.plan.digest() == second.plan.digest()
