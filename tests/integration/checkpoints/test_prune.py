"""Policies, prune and schedules against the simulator, in simulated time (see conftest)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from autovibe.checkpoints import policies, prune, schedules
from autovibe.checkpoints import service as checkpoints
from autovibe.checkpoints.errors import InvalidCheckpointRequest, PolicyInUse
from autovibe.checkpoints.retention import RetentionPolicy
from autovibe.machines import fleet
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.machines.profiles import load_profiles
from autovibe.operations.journal import Journal
from autovibe.sim.app import SimApp

HOUR = 3600


async def deploy(deps: MachineDeps, *names: str) -> None:
    for name in names:
        request = parse_request(MachineCreate, {"name": name, "profile": "claude_code", "project": "alpha"})
        [outcome] = (await fleet.deploy(deps, request, load_profiles({}), actor="tester")).outcomes
        assert outcome.status == "deployed", outcome.error


async def hourly_checkpoints(deps: MachineDeps, sim: SimApp, machine: str, count: int) -> list[str]:
    names = []
    for index in range(count):
        sim.clock.advance(HOUR)
        names.append(
            (await checkpoints.create(deps, machine, f"c{index}", ram=False, actor="t")).checkpoint.name
        )
    return names


async def backup(deps: MachineDeps, machine: str) -> str:
    """Start a PVE backup of the machine (it holds the VM's `backup` lock while it runs)."""
    target = await checkpoints.locate(deps, machine)
    upid: str = await deps.pve.post(f"/nodes/{target.node}/vzdump", vmid=str(target.vmid), storage="local")
    return upid


async def names(deps: MachineDeps, machine: str) -> list[str]:
    return [c.name for c in (await checkpoints.tree(deps, machine)).checkpoints]


async def test_prune_follows_the_projects_policy_and_keeps_pinned(
    timed: MachineDeps, stepped_sim: SimApp
) -> None:
    await deploy(timed, "agent")
    await hourly_checkpoints(timed, stepped_sim, "agent", 6)
    await checkpoints.pin(timed, "agent", "c1")
    policies.save(timed.db, "two", RetentionPolicy(last=2))
    policies.attach(timed.db, "two", project="alpha")

    [plan] = await prune.plan_prune(timed, project="alpha")
    assert plan.policy == "two"
    assert {i.checkpoint: i.keep for i in plan.items} == {
        "c5": True, "c4": True, "c3": False, "c2": False, "c1": True, "c0": False,
    }  # fmt: skip
    assert await names(timed, "agent") == ["c0", "c1", "c2", "c3", "c4", "c5"]  # planning deletes nothing

    result = await prune.apply(timed, [plan], actor="t")

    assert result.count("removed") == 3 and result.count("kept") == 3
    assert await names(timed, "agent") == ["c1", "c4", "c5"]
    assert Journal(timed.db).get(result.operation_id or "").kind == "retention.apply"


async def test_a_machine_policy_overrides_the_project_default(
    timed: MachineDeps, stepped_sim: SimApp
) -> None:
    await deploy(timed, "agent", "other")
    for machine in ("agent", "other"):
        await hourly_checkpoints(timed, stepped_sim, machine, 3)
    policies.save(timed.db, "one", RetentionPolicy(last=1))
    policies.save(timed.db, "all", RetentionPolicy(last=10))
    policies.attach(timed.db, "one", project="alpha")
    policies.attach(timed.db, "all", machine="other")

    plans = {p.machine: p for p in await prune.plan_prune(timed)}

    assert (plans["agent"].policy, len(plans["agent"].to_remove)) == ("one", 2)
    assert (plans["other"].policy, len(plans["other"].to_remove)) == ("all", 0)
    with pytest.raises(PolicyInUse, match="project alpha"):
        policies.delete(timed.db, "one")


async def test_branch_points_are_kept_unless_the_policy_says_otherwise(
    timed: MachineDeps, stepped_sim: SimApp
) -> None:
    await deploy(timed, "agent")
    await hourly_checkpoints(timed, stepped_sim, "agent", 3)
    await checkpoints.branch(timed, "agent", "c0", new_name="agent-b", actor="t")

    [guarded] = await prune.plan_prune(timed, machine="agent", override=RetentionPolicy(last=1))
    [bare] = await prune.plan_prune(
        timed, machine="agent", override=RetentionPolicy(last=1, protect_branch_points=False)
    )

    assert [i.checkpoint for i in guarded.to_remove] == ["c1"]
    assert "branch point" in next(i for i in guarded.items if i.checkpoint == "c0").reasons
    assert [i.checkpoint for i in bare.to_remove] == ["c1", "c0"]


async def test_locked_checkpoints_are_deferred_and_the_rest_completes(
    timed: MachineDeps, stepped_sim: SimApp
) -> None:
    await deploy(timed, "busy", "idle")
    for machine in ("busy", "idle"):
        await hourly_checkpoints(timed, stepped_sim, machine, 4)
    plans = await prune.plan_prune(timed, override=RetentionPolicy(last=1))
    await backup(timed, "busy")  # takes longer than the sweep will wait

    result = await prune.apply(timed, plans, actor="t", lock_wait_s=2)

    outcomes = {(i.machine, i.checkpoint): i.outcome for i in result.items}
    assert outcomes == {
        ("busy", "c3"): "kept", ("busy", "c2"): "deferred", ("busy", "c1"): "deferred",
        ("busy", "c0"): "deferred",
        ("idle", "c3"): "kept", ("idle", "c2"): "removed", ("idle", "c1"): "removed",
        ("idle", "c0"): "removed",
    }  # fmt: skip
    assert await names(timed, "idle") == ["c3"]
    assert await names(timed, "busy") == ["c0", "c1", "c2", "c3"]


async def test_a_lock_that_clears_within_the_wait_is_retried(timed: MachineDeps, stepped_sim: SimApp) -> None:
    await deploy(timed, "busy")
    await hourly_checkpoints(timed, stepped_sim, "busy", 3)
    plans = await prune.plan_prune(timed, override=RetentionPolicy(last=1))
    await backup(timed, "busy")

    result = await prune.apply(timed, plans, actor="t", lock_wait_s=3600)

    assert result.count("removed") == 2 and result.count("deferred") == 0
    assert await names(timed, "busy") == ["c2"]


async def test_schedules_take_due_checkpoints_and_prune(timed: MachineDeps, stepped_sim: SimApp) -> None:
    await deploy(timed, "agent", "solo")
    policies.save(timed.db, "three", RetentionPolicy(last=3))
    policies.attach(timed.db, "three", project="alpha")
    schedules.set_schedule(timed.db, project="alpha", every=timedelta(hours=1))
    schedules.set_schedule(timed.db, machine="solo", every=timedelta(hours=6), prune=False, ram=False)

    taken: list[Any] = []
    for _ in range(5):
        taken += await schedules.run_due(timed, actor="hub")
        taken += await schedules.run_due(timed, actor="hub")  # nothing more is due in the same hour
        stepped_sim.clock.advance(HOUR)

    assert [r.machine for r in taken] == ["agent", "solo"] + ["agent"] * 4
    assert all(r.error is None for r in taken)
    assert len(await names(timed, "agent")) == 3  # pruned to the policy after each run
    assert len(await names(timed, "solo")) == 1
    [agent_tree] = [c for c in (await checkpoints.tree(timed, "solo")).checkpoints]
    assert not agent_tree.ram and agent_tree.name.startswith("auto-")
    listed = {s.target: s for s in schedules.list_schedules(timed.db)}
    assert listed["solo"].every_s == 6 * HOUR and listed["alpha"].scope == "project"


def test_schedule_intervals_have_a_floor(timed: MachineDeps) -> None:
    with pytest.raises(InvalidCheckpointRequest, match="at least 5 minutes"):
        schedules.set_schedule(timed.db, project="alpha", every=timedelta(minutes=1))
