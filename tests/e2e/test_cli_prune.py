"""The CLI face of retention: policies, a project prune (dry run, then for real) that finishes the
unlocked machines and reports the locked one's checkpoints as deferred, and schedules run by hub tick."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from autovibe.pve import PollPolicy
from autovibe.sim.app import SimApp
from tests.e2e.test_cli_checkpoints import SPEED, CheckpointCli
from tests.e2e.test_cli_machines import assert_one_error_line
from tests.fakes.cluster_audit import sim_client

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path: Any) -> CheckpointCli:
    return CheckpointCli(tmp_path, speed=SPEED)


def snapshots(cli: CheckpointCli, vmid: int, *names: str) -> None:
    """Checkpoints taken outside autovibe (any PVE client): prune treats them like its own."""

    async def take() -> None:
        sim = SimApp.open(cli.data / "sim-state.json", speed=float(SPEED))
        async with sim_client(sim) as pve:
            for name in names:
                upid = await pve.post(f"/nodes/pve1/qemu/{vmid}/snapshot", snapname=name)
                await pve.wait_task(upid, poll=PollPolicy(initial=0.01, maximum=0.05))

    asyncio.run(take())


def test_project_prune_defers_the_locked_machine_and_completes_the_rest(cli: CheckpointCli) -> None:
    cli.ok("project", "create", "alpha")
    created = cli.json("machine", "create", "--profile", "claude_code", "--project", "alpha",
                       "--count", "2", "--node", "pve1", "--name", "m")  # fmt: skip
    vmids = {o["name"]: o["vmid"] for o in created["outcomes"]}
    for vmid in vmids.values():
        snapshots(cli, vmid, "old1", "old2", "new")

    bad = cli.run("checkpoint", "policy", "set", "keep1", "--keep-last", "1", "--keep-within", "3x")
    assert bad.returncode == 2 and "--keep-within" in assert_one_error_line(bad)
    saved = cli.json("checkpoint", "policy", "set", "keep1", "--keep-last", "1")["policy"]
    assert saved["rules"]["last"] == 1 and saved["summary"].startswith("keep 1 latest checkpoints")
    cli.ok("checkpoint", "policy", "attach", "keep1", "--project", "alpha")

    dry = cli.json("checkpoint", "prune", "--project", "alpha", "--dry-run")
    assert dry["dry_run"] is True and dry["operation_id"] is None
    decisions = {(m["machine"], i["checkpoint"]): i["outcome"] for m in dry["machines"] for i in m["items"]}
    assert decisions == {
        (m, c): ("keep" if c == "new" else "remove") for m in ("m-1", "m-2") for c in ("old1", "old2", "new")
    }
    assert len(cli.json("checkpoint", "list", "m-1")["tree"][0]["children"]) == 1  # nothing deleted

    cli.lock(vmids["m-1"], "backup")
    pruned = cli.run("checkpoint", "prune", "--project", "alpha", "--lock-wait", "1", "--json")

    assert pruned.returncode == 0, pruned.stderr
    assert f"VM {vmids['m-1']} is locked (backup)" in pruned.stderr  # it said what it waited for
    result = json.loads(pruned.stdout)
    outcomes = {(m["machine"], i["checkpoint"]): i["outcome"] for m in result["machines"] for i in m["items"]}
    assert outcomes == {
        ("m-1", "new"): "kept", ("m-1", "old2"): "deferred", ("m-1", "old1"): "deferred",
        ("m-2", "new"): "kept", ("m-2", "old2"): "removed", ("m-2", "old1"): "removed",
    }  # fmt: skip
    assert [n["name"] for n in cli.json("checkpoint", "list", "m-2")["tree"]] == ["new"]
    human = cli.ok("checkpoint", "prune", "m-2", "--dry-run").stdout
    assert "new" in human and "last" in human and "would be removed" in human


def test_schedules_are_taken_by_hub_tick(cli: CheckpointCli) -> None:
    cli.deploy_agent()
    bad = cli.run("checkpoint", "schedule", "set", "agent", "--every", "1m")
    assert bad.returncode == 2 and "at least 5 minutes" in assert_one_error_line(bad)
    cli.ok("checkpoint", "schedule", "set", "agent", "--every", "6h", "--no-prune")
    [listed] = cli.json("checkpoint", "schedule", "list")["schedules"]
    assert (listed["target"], listed["every_s"], listed["next_due_at"]) == ("agent", 6 * 3600, None)

    first = cli.json("hub", "tick")
    again = cli.json("hub", "tick")  # not due again for six hours

    [taken] = first["checkpoints"]
    assert taken["machine"] == "agent" and taken["checkpoint"].startswith("auto-") and taken["error"] is None
    assert again["checkpoints"] == []
    [root] = cli.json("checkpoint", "list", "agent")["tree"]
    assert root["name"] == taken["checkpoint"] and root["description"] == "scheduled by autovibe"
