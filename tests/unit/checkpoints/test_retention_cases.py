"""The retention engine against restic 0.14's own verdicts: one test per tests/cases/retention/<NNNN>/.

Each ``case.json`` (made by ``scripts/gen_retention_cases.py``) holds the checkpoints, the policy (our
field names), ``now`` when it matters, and what ``restic forget`` kept (with its reasons in our words) and
removed, newest first. The engine must agree on every name and every reason. A second test asks the
installed restic again, live, about a few small cases.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from autovibe.checkpoints.retention import Checkpoint, Decision, RetentionPolicy, plan

CASES_DIR = Path(__file__).resolve().parents[2] / "cases" / "retention"
CASE_DIRS = sorted(path for path in CASES_DIR.iterdir() if (path / "case.json").is_file())


def _load(folder: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((folder / "case.json").read_text())
    return case


def _plan(case: dict[str, Any]) -> list[Decision]:
    checkpoints = [
        Checkpoint(
            name=cp["name"],
            time=datetime.fromisoformat(cp["time"]),
            pinned=cp.get("pinned", False),
            branch_point=cp.get("branch_point", False),
        )
        for cp in case["checkpoints"]
    ]
    now = datetime.fromisoformat(case["now"]) if "now" in case else None
    return plan(checkpoints, RetentionPolicy(**case["policy"]), now=now)


def _verdict(decisions: list[Decision]) -> dict[str, Any]:
    return {
        "kept": {d.name: list(d.reasons) for d in decisions if d.keep},
        "removed": [d.name for d in decisions if not d.keep],
    }


def test_the_case_folder_is_populated() -> None:
    assert len(CASE_DIRS) >= 220
    policies = [_load(folder)["policy"] for folder in CASE_DIRS]
    used = {word for policy in policies for word, value in policy.items() if value}
    assert used >= set(RetentionPolicy.model_fields)


@pytest.mark.parametrize("folder", CASE_DIRS, ids=[path.name for path in CASE_DIRS])
def test_retention_case(folder: Path) -> None:
    case = _load(folder)
    decisions = _plan(case)
    assert _verdict(decisions) == {"kept": case["kept"], "removed": case["removed"]}
    # Newest first, like restic's lists.
    times = {cp["name"]: cp["time"] for cp in case["checkpoints"]}
    assert [times[d.name] for d in decisions] == sorted(times.values(), reverse=True)


def _small_cases(limit: int) -> list[dict[str, Any]]:
    """A few small cases with pinned checkpoints and different policy words, deterministic."""
    picked: list[dict[str, Any]] = []
    words: set[str] = set()
    for folder in CASE_DIRS:
        case = _load(folder)
        policy_words = {word for word, value in case["policy"].items() if value}
        if 3 <= len(case["checkpoints"]) <= 7 and policy_words - words:
            picked.append(case)
            words |= policy_words
        if len(picked) == limit:
            break
    return picked


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_small_cases_live_against_restic(tmp_path: Path) -> None:
    from scripts.gen_retention_cases import backup, forget, init_repo

    cases = _small_cases(3)
    assert len(cases) == 3
    env = init_repo(tmp_path)
    snapshots = {
        cp["name"]: datetime.fromisoformat(cp["time"]) for case in cases for cp in case["checkpoints"]
    }
    backup(env, tmp_path, sorted(snapshots.items(), key=lambda item: item[1]))
    for case in cases:
        live = forget(env, case)
        assert live == {"kept": case["kept"], "removed": case["removed"]}
        assert _verdict(_plan(case)) == live
