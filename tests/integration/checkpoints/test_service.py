"""Checkpoint services against the simulator: create with RAM, restore, branch, tree shape, ZFS rules."""

from __future__ import annotations

from typing import Any

import pytest

from autovibe.checkpoints import service as checkpoints
from autovibe.checkpoints.errors import (
    BranchNotPossible,
    CheckpointExists,
    CheckpointNotFound,
    CheckpointProtected,
    InvalidCheckpointRequest,
    RestoreNeedsDiscard,
)
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.machines.profiles import load_profiles
from autovibe.security import identity
from autovibe.security.gate import ApprovalRequired


async def deploy(deps: MachineDeps, profiles: Any, name: str = "agent", **fields: Any) -> int:
    request = parse_request(
        MachineCreate, {"name": name, "profile": "claude_code", "project": "alpha", **fields}
    )
    [outcome] = (await fleet.deploy(deps, request, profiles, actor="tester")).outcomes
    assert outcome.status == "deployed", outcome.error
    assert outcome.vmid is not None
    return outcome.vmid


async def test_restore_brings_back_config_and_running_state(deps: MachineDeps, profiles: Any) -> None:
    vmid = await deploy(deps, profiles)
    created = await checkpoints.create(deps, "agent", "before", description="clean", actor="tester")
    assert created.checkpoint.ram and created.checkpoint.description == "clean"
    target = await checkpoints.locate(deps, "agent")
    await deps.pve.put(f"{target.path}/config", cores=8)
    detail = await checkpoints.show(deps, "agent", "before")
    assert [(c.key, c.checkpoint, c.current) for c in detail.changes] == [("cores", "2", "8")]
    await machines.power(deps, "agent", "stop")

    restored = await checkpoints.restore(deps, "agent", "before", actor="tester")

    assert restored.status == "running"  # RAM state: it resumes where it was
    config = await deps.pve.get(f"/nodes/{target.node}/qemu/{vmid}/config")
    assert config["cores"] == 2
    assert (await checkpoints.tree(deps, "agent")).here == "before"


async def test_restore_then_create_makes_a_branch_point(deps: MachineDeps, profiles: Any) -> None:
    await deploy(deps, profiles)
    for name in ("one", "two"):
        await checkpoints.create(deps, "agent", name, actor="tester")
    await checkpoints.restore(deps, "agent", "one", actor="tester")
    await checkpoints.create(deps, "agent", "three", actor="tester")

    tree = await checkpoints.tree(deps, "agent")

    assert [c.name for c in tree.children("one")] == ["two", "three"]
    assert tree.here == "three"
    [root] = tree.nested()
    assert root["name"] == "one"
    assert [c["name"] for c in root["children"]] == ["two", "three"]
    assert root["children"][1]["children"] == [
        {"name": "current", "current": True, "status": "running", "children": []}
    ]


async def test_branch_clones_the_checkpoint_into_a_recorded_machine(deps: MachineDeps, profiles: Any) -> None:
    await deploy(deps, profiles)
    await checkpoints.create(deps, "agent", "base", actor="tester")
    target = await checkpoints.locate(deps, "agent")
    await deps.pve.put(f"{target.path}/config", cores=6)

    record = await checkpoints.branch(deps, "agent", "base", new_name="agent-b", actor="tester")

    child = await machines.show(deps, "agent-b")
    assert (child.parent_machine, child.parent_checkpoint, child.status) == ("agent", "base", "running")
    config = await deps.pve.get(f"/nodes/{child.node}/qemu/{child.vmid}/config")
    assert config["cores"] == 2 and "parent" not in config
    assert record.state["vmid"] == child.vmid
    assert (await checkpoints.tree(deps, "agent")).get("base").branches == ("agent-b",)  # type: ignore[union-attr]


async def test_zfs_restore_to_an_older_checkpoint_needs_discard(deps: MachineDeps, profiles: Any) -> None:
    await deploy(deps, load_profiles({"claude_code": {"storage": "local-zfs"}}))
    for name in ("s1", "s2", "s3"):
        await checkpoints.create(deps, "agent", name, actor="tester")
    with pytest.raises(RestoreNeedsDiscard, match=r"2 newer checkpoint\(s\) exist \(s3, s2\)"):
        await checkpoints.restore(deps, "agent", "s1", actor="tester")
    await checkpoints.pin(deps, "agent", "s2")
    with pytest.raises(CheckpointProtected, match="'s2' \\(pinned\\)"):
        await checkpoints.restore(deps, "agent", "s1", discard_newer=True, actor="tester")
    await checkpoints.pin(deps, "agent", "s2", pinned=False)

    # Discarding newer checkpoints is high risk: held until another identity approves it.
    with pytest.raises(ApprovalRequired) as held:
        await checkpoints.restore(deps, "agent", "s1", discard_newer=True, actor="tester")
    identity.add_user(deps.db, "bob")
    identity.bind(deps.db, "bob", "admin")
    deps.security.decide(identity.identity_of(deps.db, "bob"), held.value.approval_id, approve=True)
    restored = await checkpoints.restore(
        deps, "agent", "s1", discard_newer=True, actor="tester", approval=held.value.approval_id
    )

    assert restored.discarded == ("s3", "s2")
    assert [c.name for c in (await checkpoints.tree(deps, "agent")).checkpoints] == ["s1"]
    with pytest.raises(BranchNotPossible, match="cannot full-clone from a ZFS snapshot"):
        await checkpoints.branch(deps, "agent", "s1", new_name="agent-b", actor="tester")
    assert [m.name for m in await machines.list_machines(deps)] == ["agent"]


async def test_refusals_touch_nothing(deps: MachineDeps, profiles: Any) -> None:
    await deploy(deps, profiles)
    with pytest.raises(InvalidCheckpointRequest, match="reserved"):
        await checkpoints.create(deps, "agent", "current", actor="tester")
    with pytest.raises(InvalidCheckpointRequest, match="invalid checkpoint name '1x'"):
        await checkpoints.create(deps, "agent", "1x", actor="tester")
    await checkpoints.create(deps, "agent", "x1", actor="tester", pin=True)
    with pytest.raises(CheckpointExists):
        await checkpoints.create(deps, "agent", "x1", actor="tester")
    with pytest.raises(CheckpointNotFound, match="has no checkpoint 'nope'") as missing:
        await checkpoints.restore(deps, "agent", "nope", actor="tester")
    assert missing.value.hint == "its checkpoints: x1"
    with pytest.raises(CheckpointProtected, match="pinned"):
        await checkpoints.delete(deps, "agent", "x1", actor="tester")
    assert [c.name for c in (await checkpoints.tree(deps, "agent")).checkpoints] == ["x1"]
