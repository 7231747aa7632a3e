"""Table-driven machine requests: one test per tests/cases/machine_requests/<case>.json.

A case gives a ``request`` (what a face would pass), optional ``profiles`` (the config file's
overrides), and then either ``spec`` (a subset of the resolved :class:`MachineSpec`, with ``ttl`` as
``ttl_seconds`` and tuples as lists) or ``error`` (``field`` the message must start with, ``message``
a substring, optional ``kind`` — default ``InvalidMachineRequest`` — and ``hint`` substring).
The request goes through the whole pure path: parse_request → get_profile → resolved_spec.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from autovibe.machines import errors
from autovibe.machines.models import MachineCreate, MachineSpec, parse_request, resolved_spec
from autovibe.machines.profiles import get_profile, load_profiles

CASES_DIR = Path(__file__).resolve().parents[2] / "cases" / "machine_requests"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))


def _resolve(case: dict[str, Any]) -> MachineSpec:
    request = parse_request(MachineCreate, case["request"])
    profile = get_profile(load_profiles(case.get("profiles", {})), request.profile)
    return resolved_spec(request, profile)


def _plain(spec: MachineSpec) -> dict[str, Any]:
    values = {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)}
    ttl = values.pop("ttl")
    values["ttl_seconds"] = None if ttl is None else ttl.total_seconds()
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def test_the_case_folder_is_populated() -> None:
    assert len(CASE_FILES) >= 20


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[path.stem for path in CASE_FILES])
def test_machine_request_case(case_file: Path) -> None:
    case: dict[str, Any] = json.loads(case_file.read_text())
    assert ("spec" in case) != ("error" in case), f"{case_file.name} needs exactly one of spec/error"
    if "spec" in case:
        resolved = _plain(_resolve(case))
        unknown = set(case["spec"]) - set(resolved)
        assert not unknown, f"the case names fields MachineSpec does not have: {unknown}"
        assert {key: resolved[key] for key in case["spec"]} == case["spec"]
        return
    expected = case["error"]
    kind = getattr(errors, expected.get("kind", "InvalidMachineRequest"))
    with pytest.raises(kind) as caught:
        _resolve(case)
    message = caught.value.message
    assert "\n" not in message
    if "field" in expected:
        assert message.startswith(f"{expected['field']}: "), message
    assert expected["message"] in message
    assert expected.get("hint", "") in (caught.value.hint or "")
