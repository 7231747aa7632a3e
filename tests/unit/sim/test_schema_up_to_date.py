"""The shipped schema_data file is exactly what scripts/gen_sim_schema.py makes from ../shared/pve-api."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
GENERATOR = REPO / "scripts" / "gen_sim_schema.py"
SOURCE = REPO.parent / "shared" / "pve-api" / "pve-8.4-apidoc.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_sim_schema", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SOURCE.is_file(), reason=f"PVE apidoc source not present at {SOURCE}")
def test_shipped_schema_matches_a_fresh_generation(tmp_path: Path) -> None:
    generator = _load_generator()
    assert generator.main([str(SOURCE), "--out", str(tmp_path)]) == 0
    generated = sorted(tmp_path.iterdir())
    assert len(generated) == 1
    shipped = resources.files("autovibe.sim").joinpath("schema_data").joinpath(generated[0].name)
    assert shipped.is_file(), f"{generated[0].name} is not shipped; run python scripts/gen_sim_schema.py"
    assert shipped.read_bytes() == generated[0].read_bytes(), (
        "schema_data is stale; run python scripts/gen_sim_schema.py"
    )


@pytest.mark.skipif(not SOURCE.is_file(), reason=f"PVE apidoc source not present at {SOURCE}")
def test_generation_is_deterministic(tmp_path: Path) -> None:
    generator = _load_generator()
    first, second = tmp_path / "a", tmp_path / "b"
    assert generator.main([str(SOURCE), "--out", str(first)]) == 0
    assert generator.main([str(SOURCE), "--out", str(second)]) == 0
    assert [p.read_bytes() for p in sorted(first.iterdir())] == [
        p.read_bytes() for p in sorted(second.iterdir())
    ]


def test_perl_regex_groups_are_rewritten() -> None:
    generator = _load_generator()
    assert generator.perl_to_python_regex("(?^:[a-z]+)(?^i:x)") == "(?:[a-z]+)(?i:x)"
