"""Table-driven placement: one test per tests/cases/placement/<case>.json.

A case gives the cluster as ``nodes`` (readable: GiB, ``online``) or as raw ``resources`` rows of
``/cluster/resources`` (read through ``node_loads``), a ``demand`` (``memory_mib``, ``cores``),
optional ``requested`` node, ``reserved_gib`` per node and fleet ``count``, and then exactly one of:
``expect`` (a node name, or the list of nodes of a fleet), ``expect_counts`` (machines per node of a
fleet), or ``error`` (``kind``: class name in autovibe.machines.errors; ``message``/``hint``: substrings).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from autovibe.machines import errors
from autovibe.machines.placement import Demand, NodeLoad, choose_node, node_loads, plan_fleet
from autovibe.pve.models import ClusterResource
from autovibe.types import GIB, MIB

CASES_DIR = Path(__file__).resolve().parents[2] / "cases" / "placement"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))


def _nodes(case: dict[str, Any]) -> list[NodeLoad]:
    if "resources" in case:
        return node_loads([ClusterResource.model_validate(row) for row in case["resources"]])
    return [
        NodeLoad(
            name=node["name"],
            online=node["online"],
            maxmem=int(node["maxmem_gib"] * GIB),
            mem=int(node["mem_gib"] * GIB),
            maxcpu=node["maxcpu"],
            cpu=node["cpu"],
        )
        for node in case["nodes"]
    ]


def _run(case: dict[str, Any]) -> str | list[str]:
    nodes = _nodes(case)
    demand = Demand(memory=case["demand"]["memory_mib"] * MIB, cores=case["demand"]["cores"])
    reserved = {name: int(gib * GIB) for name, gib in case.get("reserved_gib", {}).items()}
    requested = case.get("requested")
    if "count" in case:
        return plan_fleet(nodes, demand, case["count"], requested=requested, reserved=reserved)
    return choose_node(nodes, demand, requested=requested, reserved=reserved)


def test_the_case_folder_is_populated() -> None:
    assert len(CASE_FILES) >= 8


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[path.stem for path in CASE_FILES])
def test_placement_case(case_file: Path) -> None:
    case: dict[str, Any] = json.loads(case_file.read_text())
    outcomes = {"expect", "expect_counts", "error"} & set(case)
    assert len(outcomes) == 1, f"{case_file.name} must have exactly one of expect/expect_counts/error"
    if "error" in case:
        kind = getattr(errors, case["error"]["kind"])
        with pytest.raises(kind) as caught:
            _run(case)
        assert type(caught.value) is kind  # not merely a subclass: the kind decides the exit code
        assert case["error"]["message"] in caught.value.message
        assert case["error"].get("hint", "") in (caught.value.hint or "")
        return
    result = _run(case)
    if "expect_counts" in case:
        assert dict(Counter(result)) == case["expect_counts"]
    else:
        assert result == case["expect"]
