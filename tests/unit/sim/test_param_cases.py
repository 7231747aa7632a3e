"""Table-driven PVE parameter cases: one test per tests/cases/pve_params/<case>.json.

Each case is ``{"method", "path" (concrete, after /api2/json), "params", "json_body"?, "ok",
"errors"?: {param: substring of PVE's message}}``. A failing case must produce exactly the listed
error keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autovibe.sim.errors import SimApiError
from autovibe.sim.schema import ApiSchema
from autovibe.sim.validate import validate

CASES_DIR = Path(__file__).resolve().parents[2] / "cases" / "pve_params"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))


def test_the_case_folder_is_populated() -> None:
    assert len(CASE_FILES) >= 15


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[path.stem for path in CASE_FILES])
def test_param_case(case_file: Path) -> None:
    case: dict[str, Any] = json.loads(case_file.read_text())
    found = ApiSchema.load().match(case["method"], case["path"])
    assert found is not None, f"no endpoint for {case['method']} {case['path']}"
    endpoint, path_params = found
    raw = {**case["params"], **path_params}
    json_body = bool(case.get("json_body", False))
    if case["ok"]:
        result = validate(endpoint, raw, json_body=json_body)
        assert set(result) == set(raw)
        return
    with pytest.raises(SimApiError) as caught:
        validate(endpoint, raw, json_body=json_body)
    errors = caught.value.errors or {}
    assert set(errors) == set(case["errors"]), errors
    for name, fragment in case["errors"].items():
        assert fragment in errors[name], (name, errors[name])
