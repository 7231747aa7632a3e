"""Checkpoint names, generated names, config diffs and the tree's shape (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from autovibe.checkpoints.errors import InvalidCheckpointRequest
from autovibe.checkpoints.models import (
    Checkpoint,
    CheckpointTree,
    check_name,
    config_changes,
    generated_name,
)

T0 = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("name", ["ab", "before-upgrade", "A_1", "x" * 40])
def test_names_pve_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [("a", "2 to 40"), ("1abc", "starting with a letter"), ("has space", "letters"), ("x" * 41, "2 to 40"),
     ("current", "reserved"), ("Pending", "reserved"), ("", "2 to 40"), ("dot.ted", "letters")],
)  # fmt: skip
def test_names_pve_refuses_are_refused_first(name: str, why: str) -> None:
    with pytest.raises(InvalidCheckpointRequest, match=why):
        check_name(name)


def test_generated_names_are_utc_and_unique() -> None:
    local = T0.astimezone(timezone(timedelta(hours=5)))
    assert generated_name(local, set()) == "ckpt-20261121-093000"
    taken = {"ckpt-20261121-093000", "ckpt-20261121-093000-2"}
    assert generated_name(T0, taken) == "ckpt-20261121-093000-3"
    assert check_name(generated_name(T0, taken, prefix="auto"))


def test_config_changes_ignore_bookkeeping_keys() -> None:
    saved = {"cores": 2, "memory": "4096", "snaptime": 1, "vmstate": "x", "parent": "a", "net0": "v"}
    now = {"cores": 8, "memory": "4096", "digest": "d", "parent": "b", "scsi1": "local:1", "unused0": "u"}
    changes = [(c.key, c.checkpoint, c.current) for c in config_changes(saved, now)]
    assert changes == [("cores", "2", "8"), ("net0", "v", None), ("scsi1", None, "local:1")]


def cp(name: str, hours: int, parent: str | None = None) -> Checkpoint:
    return Checkpoint(name=name, time=T0 + timedelta(hours=hours), ram=False, parent=parent)


def test_tree_children_newer_and_nested() -> None:
    tree = CheckpointTree(
        machine="m", vmid=100, node="pve1", status="running", here="three",
        checkpoints=(cp("one", 0), cp("two", 1, "one"), cp("three", 2, "one"), cp("lost", 3, "gone")),
    )  # fmt: skip
    assert [c.name for c in tree.children(None)] == ["one", "lost"]  # a vanished parent makes a root
    assert [c.name for c in tree.children("one")] == ["two", "three"]
    assert [c.name for c in tree.newer_than("two")] == ["lost", "three"]
    nested = tree.nested()
    assert [n["name"] for n in nested] == ["one", "lost"]
    three = nested[0]["children"][1]
    assert three["name"] == "three" and three["children"][0]["current"] is True


def test_current_is_a_root_before_any_checkpoint() -> None:
    tree = CheckpointTree(machine="m", vmid=100, node="pve1", status="stopped", here=None)
    assert tree.nested() == [{"name": "current", "current": True, "status": "stopped", "children": []}]
