"""The CLI face of checkpoints, as a user runs it: create with RAM, restore, the tree, branch, refusals.

Like ``test_cli_machines``, every test runs the real ``autovibe`` as a subprocess with its own HOME, so
the embedded simulator and the store start fresh and successive commands share them; the simulated
clock runs at 1000x. Changes "from outside" (another PVE client editing the VM, a backup holding its
lock) are made on the same persisted cluster, in process, through the real ``PveClient``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from autovibe.sim.app import SimApp
from tests.e2e.test_cli_machines import Cli, assert_one_error_line
from tests.fakes.cluster_audit import sim_client

pytestmark = pytest.mark.e2e

SPEED = "1000"
ZFS_PROFILES = json.dumps({"claude_code": {"storage": "local-zfs"}})
ENVELOPE_KEYS = {"target", "simulated"}


@dataclass
class CheckpointCli(Cli):
    """A HOME with project alpha and a running machine ``agent``; ``profiles`` overrides (JSON)."""

    profiles: str | None = None

    def env(self, **extra: str) -> dict[str, str]:
        if self.profiles is not None:
            extra.setdefault("AUTOVIBE_PROFILES", self.profiles)
        return super().env(**extra)

    def deploy_agent(self) -> int:
        self.ok("project", "create", "alpha")
        created = self.json("machine", "create", "--profile", "claude_code", "--project", "alpha",
                            "--name", "agent")  # fmt: skip
        [outcome] = created["outcomes"]
        assert outcome["status"] == "deployed", outcome
        return int(outcome["vmid"])

    def pve(self, method: str, path: str, **params: Any) -> Any:
        """One call on the same simulated cluster, as any other PVE client would make it."""

        async def call() -> Any:
            sim = SimApp.open(self.data / "sim-state.json", speed=float(SPEED))
            async with sim_client(sim) as pve:
                return await getattr(pve, method)(path, **params)

        return asyncio.run(call())

    def run_together(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Run CLI commands at the same time (for commands that change nothing); results in order."""
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "autovibe", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self.env(),
            )
            for args in commands
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return results

    def lock(self, vmid: int, reason: str) -> None:
        """Hold PVE's config lock on ``vmid`` (as a running backup does), once its own tasks are done."""
        sim = SimApp.open(self.data / "sim-state.json", speed=float(SPEED))
        assert sim.state is not None
        with sim.state.locked():
            sim.cluster.advance(sim.clock.now())
            guest = sim.cluster.guest("pve1", vmid)
            assert guest.lock is None
            guest.config["lock"] = reason
            sim.save()


@pytest.fixture
def cli(tmp_path: Any) -> CheckpointCli:
    return CheckpointCli(tmp_path, speed=SPEED)


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["name"] for node in nodes]


def test_restore_brings_back_the_config_running_then_a_branch_point_and_a_branch(cli: CheckpointCli) -> None:
    vmid = cli.deploy_agent()
    path = f"/nodes/pve1/qemu/{vmid}"

    created = cli.json("checkpoint", "create", "agent", "before", "--description", "clean install")
    assert ENVELOPE_KEYS | {"machine", "checkpoint", "operation_id", "ram_skipped"} <= set(created)
    assert created["machine"] == "agent" and created["ram_skipped"] is False
    taken = created["checkpoint"]
    assert (taken["name"], taken["ram"], taken["description"]) == ("before", True, "clean install")

    cli.pve("put", f"{path}/config", cores=8)  # someone changes the machine behind autovibe's back
    shown = cli.json("checkpoint", "show", "agent", "before")
    assert ENVELOPE_KEYS | {"machine", "checkpoint", "config", "changes"} <= set(shown)
    assert shown["changes"] == [{"key": "cores", "checkpoint": "2", "current": "8"}]
    cli.pve("post", f"{path}/status/stop")

    restored = cli.json("checkpoint", "restore", "agent", "before")

    assert ENVELOPE_KEYS | {"machine", "restored", "status", "discarded", "operation_id"} <= set(restored)
    assert (restored["restored"], restored["status"], restored["discarded"]) == ("before", "running", [])
    assert cli.pve("get", f"{path}/config")["cores"] == 2
    assert cli.pve("get", f"{path}/status/current")["status"] == "running"

    # Restore, then create: 'before' gets a second child, and "you are here" hangs under the newest.
    cli.ok("checkpoint", "create", "agent", "two")
    cli.ok("checkpoint", "restore", "agent", "before")
    cli.ok("checkpoint", "create", "agent", "three", "--no-ram")

    branched = cli.ok("checkpoint", "branch", "agent", "before", "--as", "agent-b")
    assert "disk state, not its RAM" in branched.stdout and "agent-b" in branched.stdout
    child = cli.json("machine", "show", "agent-b")["machine"]
    assert (child["parent_machine"], child["parent_checkpoint"], child["status"]) == (
        "agent",
        "before",
        "running",
    )

    listed = cli.json("checkpoint", "list", "agent")
    assert ENVELOPE_KEYS | {"machine", "vmid", "here", "tree"} <= set(listed)
    assert (listed["machine"], listed["vmid"], listed["here"]) == ("agent", vmid, "three")
    [root] = listed["tree"]
    assert root["name"] == "before" and root["branches"] == ["agent-b"]
    assert _names(root["children"]) == ["two", "three"]  # the branch point
    assert root["children"][1]["ram"] is False
    assert root["children"][1]["children"] == [
        {"name": "current", "current": True, "status": "running", "children": []}
    ]

    human = cli.ok("checkpoint", "list", "agent").stdout.splitlines()
    assert human[1] == f"checkpoints of 'agent' (VM {vmid} on pve1; times UTC)"
    tree = [line for line in human[2:] if line.strip()]
    assert [line.split(" · ")[0] for line in tree] == [
        "- before",
        "  - two",
        "  - three",
        "    - ● you are here (running)",
    ]
    assert tree[0].endswith(" · RAM · branched → agent-b · clean install")
    assert tree[2].endswith(" · disk only")


def test_refusals_zfs_discard_pins_and_locks(cli: CheckpointCli) -> None:
    cli.profiles = ZFS_PROFILES
    vmid = cli.deploy_agent()
    cli.ok("checkpoint", "create", "agent", "s1")
    cli.ok("checkpoint", "create", "agent", "s2", "--pin")

    # Refusals change nothing, so they run side by side.
    bad_name, reserved, no_machine, no_checkpoint, older, unattended, pinned = cli.run_together(
        ("checkpoint", "create", "agent", "1x"),
        ("checkpoint", "create", "agent", "current"),
        ("checkpoint", "create", "nope", "s3"),
        ("checkpoint", "restore", "agent", "nope"),
        ("checkpoint", "restore", "agent", "s1"),
        ("checkpoint", "restore", "agent", "s1", "--discard-newer"),
        ("checkpoint", "delete", "agent", "s2"),
    )
    for refused, expected in ((bad_name, "invalid checkpoint name '1x'"), (reserved, "reserved by PVE")):
        assert refused.returncode == 2, refused.stderr
        assert expected in assert_one_error_line(refused)
        assert refused.stdout == ""  # refused before anything: not even the target header
    assert (no_machine.returncode, no_checkpoint.returncode) == (4, 4)
    assert "has no checkpoint 'nope'" in no_checkpoint.stderr
    assert older.returncode == 1
    assert "rolls back only to the newest snapshot" in older.stderr
    assert "hint: add --discard-newer" in older.stderr
    assert unattended.returncode == 2
    assert "--yes" in assert_one_error_line(unattended)
    assert pinned.returncode == 1 and "is pinned" in pinned.stderr

    cli.ok("checkpoint", "unpin", "agent", "s2")
    # Deleting newer checkpoints is high risk: --yes alone holds it for another identity's approval.
    held = cli.run("checkpoint", "restore", "agent", "s1", "--discard-newer", "--yes")
    assert held.returncode == 3 and "needs an approval" in held.stderr, held.stderr
    request = held.stderr.split("request ")[1].split()[0]
    cli.ok("user", "add", "carol")
    cli.ok("role", "bind", "carol", "operator", "--project", "alpha")
    carol = cli.json("token", "create", "carol")["secret"]
    assert cli.run("approve", request, AUTOVIBE_TOKEN=carol).returncode == 3  # operators cannot approve
    cli.ok("role", "bind", "carol", "admin")
    assert cli.run("approve", request, AUTOVIBE_TOKEN=carol).returncode == 0
    restored = cli.json(
        "checkpoint", "restore", "agent", "s1", "--discard-newer", "--yes", "--approval", request
    )
    assert (restored["status"], restored["discarded"]) == ("running", ["s2"])
    assert _names(cli.json("checkpoint", "list", "agent")["tree"]) == ["s1"]  # and nothing else made
    deleted = cli.json("checkpoint", "delete", "agent", "s1")
    assert ENVELOPE_KEYS | {"machine", "deleted", "operation_id"} <= set(deleted)

    cli.lock(vmid, "backup")
    waited = cli.run("checkpoint", "create", "agent", "s3", "--lock-timeout", "1", "--json")
    assert waited.returncode == 1 and waited.stdout == ""
    assert "Traceback" not in waited.stderr
    assert f"waiting: VM {vmid} is locked (backup); retrying 'snapshot VM {vmid}' in " in waited.stderr
    assert "(gives up after 1 s)" in waited.stderr
    assert "(everything it did was undone); operation " in waited.stderr
