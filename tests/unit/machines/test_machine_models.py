"""Value parsing, schema variants and the error classes of the machines area."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from autovibe.errors import AutovibeConflict, AutovibeError, AutovibeInvalid, AutovibeNotFound
from autovibe.machines import errors
from autovibe.machines.models import (
    MachineCreate,
    MachineRead,
    ProjectCreate,
    ProjectRead,
    expand_names,
    parse_disk_gib,
    parse_memory_mib,
    parse_request,
    parse_ttl,
    resolved_spec,
)
from autovibe.machines.placement import Demand
from autovibe.machines.profiles import SEED_PROFILES
from autovibe.types import GIB, MIB

BASE = {"name": "agent", "profile": "claude_code", "project": "research"}


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (4096, 4096),
        (4096.0, 4096),
        ("4096", 4096),
        ("4G", 4096),
        ("4g", 4096),
        ("4 GiB", 4096),
        ("4GB", 4096),
        ("4096M", 4096),
        ("4096 MiB", 4096),
        ("0.5T", 524288),
        ("65536K", 64),
        ("67108864B", 64),
        (" 8G ", 8192),
    ],
)
def test_memory_sizes_become_mib(value: object, mib: int) -> None:
    assert parse_memory_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "'lots' is not a size"),
        ("", "is not a size"),
        ("4X", "is not a size"),
        ("-4G", "is not a size"),
        ("4 G B", "is not a size"),
        (True, "expected a size, not bool"),
        (None, "expected a size, not NoneType"),
        (-1, "not a positive size"),
        (float("nan"), "not a positive size"),
        (10**400, "far too large"),
        ("4.5M", "not a whole number of MiB"),
        (63, "out of range"),
        (4194305, "out of range"),
    ],
)
def test_memory_that_is_not_a_size_is_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_memory_mib(value)


@given(gib=st.integers(1, 4096))
def test_memory_units_agree(gib: int) -> None:
    assert parse_memory_mib(f"{gib}G") == parse_memory_mib(f"{gib * 1024}M") == parse_memory_mib(gib * 1024)


@pytest.mark.parametrize(
    ("value", "gib"), [(20, 20), ("20G", 20), ("20 GiB", 20), ("1T", 1024), ("2048M", 2)]
)
def test_disk_sizes_become_gib(value: object, gib: int) -> None:
    assert parse_disk_gib(value) == gib


@pytest.mark.parametrize("value", [0, "512M", "1.5G", "big", False])
def test_disk_sizes_must_be_whole_positive_gib(value: object) -> None:
    with pytest.raises(ValueError):
        parse_disk_gib(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", timedelta(hours=8)),
        ("30m", timedelta(minutes=30)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 1h 30m ", timedelta(hours=1, minutes=30)),
        ("1W2D", timedelta(days=9)),
        ("90s", timedelta(seconds=90)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_durations_parse(text: object, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is not a duration"),
        ("8", "is not a duration"),
        ("h", "is not a duration"),
        ("30x", "is not a duration"),
        ("30m1h", "is not a duration"),  # largest unit first, so a typo is not silently summed
        ("0h", "longer than zero"),
        (timedelta(seconds=-1), "longer than zero"),
        ("3651d", "at most 3650 days"),
        ("99999999999w", "longer than 3650 days"),
        (3600, "expected a duration"),
    ],
)
def test_bad_durations_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ttl(value)


@given(d=st.integers(0, 400), h=st.integers(0, 23), m=st.integers(0, 59), s=st.integers(0, 59))
def test_any_written_duration_round_trips(d: int, h: int, m: int, s: int) -> None:
    expected = timedelta(days=d, hours=h, minutes=m, seconds=s)
    text = "".join(f"{n}{unit}" for n, unit in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n)
    if expected:
        assert parse_ttl(text) == expected


def test_expand_names() -> None:
    assert expand_names("web", 1) == ["web"]
    assert expand_names("web", 3) == ["web-1", "web-2", "web-3"]
    assert len(set(expand_names("web", 500))) == 500
    for bad in (0, 501):
        with pytest.raises(errors.InvalidMachineRequest):
            expand_names("web", bad)


def test_a_request_is_frozen_and_knows_its_names() -> None:
    request = parse_request(MachineCreate, {**BASE, "count": 2, "labels": {"critical": True}})
    assert request.names == ["agent-1", "agent-2"]
    assert request.labels == {"critical": "true"}
    with pytest.raises(ValidationError):
        request.cores = 4  # type: ignore[misc]


def test_the_spec_offers_bytes_and_a_placement_demand() -> None:
    request = parse_request(MachineCreate, {**BASE, "memory_mib": "6G", "labels": {"critical": "1"}})
    spec = resolved_spec(request, SEED_PROFILES["claude_code"])
    assert (spec.memory_bytes, spec.disk_bytes) == (6 * GIB, 20 * GIB)
    assert spec.demand == Demand(memory=6144 * MIB, cores=2)
    assert spec.critical
    assert not resolved_spec(parse_request(MachineCreate, BASE), SEED_PROFILES["claude_code"]).critical


def test_a_spec_refuses_a_profile_other_than_the_requested_one() -> None:
    with pytest.raises(errors.InvalidMachineRequest, match=r"^profile: "):
        resolved_spec(parse_request(MachineCreate, BASE), SEED_PROFILES["hub"])


def test_parse_request_counts_further_problems() -> None:
    with pytest.raises(errors.InvalidMachineRequest) as caught:
        parse_request(MachineCreate, {"name": "bad_name", "cores": 0})
    assert caught.value.message.startswith("name: 'bad_name' is not a valid VM name")
    assert caught.value.message.endswith("(and 3 more problems)")  # cores, profile, project


def _read(**changes: object) -> MachineRead:
    values: dict[str, object] = {
        "name": "agent",
        "vmid": 101,
        "node": "pve1",
        "project": "research",
        "profile": "claude_code",
        "status": "running",
        "created_by": "root@pam",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return MachineRead.model_validate({**values, **changes})


def test_machine_read_flags_a_machine_pve_lost() -> None:
    assert not _read().missing
    assert _read(status="missing").missing
    assert _read(labels={"critical": "true"}).critical


def test_machine_read_refuses_naive_times() -> None:
    with pytest.raises(ValidationError):
        _read(created_at=datetime(2026, 1, 1))  # naive on purpose


@pytest.mark.parametrize("name", ["research", "ml-team_2", "a", "0" * 63])
def test_project_names_that_are_fine(name: str) -> None:
    assert parse_request(ProjectCreate, {"name": name}).name == name


@pytest.mark.parametrize("name", ["Research", "-team", "_team", "a" * 64, "team.one", ""])
def test_project_names_that_are_refused(name: str) -> None:
    with pytest.raises(errors.InvalidMachineRequest, match=r"^name: "):
        parse_request(ProjectCreate, {"name": name})


def test_project_schema_variants() -> None:
    created = parse_request(ProjectCreate, {"name": "research", "labels": {"owner": "ana"}})
    read = ProjectRead(**created.model_dump())
    assert (read.name, read.description, read.labels, read.created_at) == (
        "research",
        "",
        {"owner": "ana"},
        None,
    )
    with pytest.raises(errors.InvalidMachineRequest, match=r"^description: "):
        parse_request(ProjectCreate, {"name": "research", "description": "x" * 1025})


@pytest.mark.parametrize(
    ("cls", "kind", "builtin"),
    [
        (errors.ProfileNotFound, AutovibeNotFound, KeyError),
        (errors.ProjectNotFound, AutovibeNotFound, KeyError),
        (errors.MachineNotFound, AutovibeNotFound, KeyError),
        (errors.NodeNotFound, AutovibeNotFound, None),
        (errors.NodeUnavailable, AutovibeConflict, None),
        (errors.InsufficientCapacity, AutovibeConflict, None),
        (errors.ProjectNotEmpty, AutovibeConflict, None),
        (errors.MachineNameTaken, AutovibeConflict, None),
        (errors.InvalidMachineRequest, AutovibeInvalid, ValueError),
        (errors.ProfileInvalid, AutovibeInvalid, ValueError),
    ],
)
def test_each_error_has_its_kind_its_builtin_and_a_hint(
    cls: type[AutovibeError], kind: type[AutovibeError], builtin: type[Exception] | None
) -> None:
    error = cls("it went wrong")
    assert isinstance(error, kind)
    assert builtin is None or isinstance(error, builtin)
    # Exactly one kind, or the faces' kind table would be ambiguous.
    kinds = (AutovibeNotFound, AutovibeConflict, AutovibeInvalid)
    assert sum(isinstance(error, other) for other in kinds) == 1
    assert str(error) == "it went wrong"  # KeyError would otherwise show "'it went wrong'"
    assert error.hint
    assert cls("x", hint="do this").hint == "do this"
