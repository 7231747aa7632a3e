"""The CLI face of projects, machines, operations, the store and the hub, as a user runs it.

Every test runs the real ``autovibe`` as a subprocess with its own HOME and XDG dirs, so the embedded
simulator and the SQLite store start fresh and successive commands share them. The simulated clock runs
at 200x (``AUTOVIBE_SIM_SPEED``) so a deploy takes a fraction of a second. stdout is a pipe: human
output is plain, and ``--json`` output is parsed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autovibe.sim.app import SimApp
from autovibe.store.db import Database, sqlite_url
from tests.fakes.cluster_audit import Audit, audit_sim

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0


@dataclass
class Cli:
    home: Path
    speed: str = "200"

    @property
    def data(self) -> Path:
        return self.home / "data" / "autovibe"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            NO_COLOR="1",
            AUTOVIBE_SIM_SPEED=self.speed,
            **extra,
        )
        return env

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "autovibe", *args],
            capture_output=True,
            text=True,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            timeout=90,
            check=False,
        )

    def run_together(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Run CLI commands at the same time, results in order: only for commands that change nothing
        another of them reads. Each CLI process costs ~1 s (mostly imports): this keeps both CPUs busy."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self.run(*args), commands))

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    @staticmethod
    def parsed(result: subprocess.CompletedProcess[str]) -> Any:
        """The JSON output of a command that must have succeeded (as ``json`` checks it)."""
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def machines(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.json("machine", "list")["machines"]}

    def _audit(self) -> Audit:
        sim = SimApp.open(self.data / "sim-state.json", speed=0)
        db = Database(sqlite_url(self.data / "autovibe.db"))
        try:
            return asyncio.run(audit_sim(sim, db))
        finally:
            db.dispose()

    def audit(self, requested: set[str]) -> set[str]:
        """After deploys only: each requested machine is running and recorded, or absent from both
        PVE and the store; no orphan VM, no dangling row, nothing unfinished. Returns the deployed."""
        return self._audit().assert_clean(requested)

    def vms_and_rows(self) -> tuple[set[str], set[str]]:
        """The names of the non-template VMs in PVE, and of the machines in the store."""
        audit = self._audit()
        return {guest.name for guest in audit.guests}, {row.name for row in audit.rows}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _approved(cli: Cli, approver: str) -> str:
    """Ask again for the last held request, have ``approver`` approve it, return its id."""
    held = cli.run("machine", "delete", "claude-code-2", "--yes")
    request = held.stderr.split("request ")[1].split()[0]
    assert cli.run("approve", request, AUTOVIBE_TOKEN=approver).returncode == 0
    return request


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ---- projects --------------------------------------------------------------------------------------


def test_project_create_list_show_delete(cli: Cli) -> None:
    created = cli.run("project", "create", "alpha", "--description", "agents", "--label", "team=ml")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[0].startswith("target: simulated cluster (embedded")
    cli.ok("project", "create", "beta")
    listed = cli.json("project", "list")["projects"]
    assert [(p["name"], p["description"], p["labels"], p["machines"]) for p in listed] == [
        ("alpha", "agents", {"team": "ml"}, []),
        ("beta", "", {}, []),
    ]
    assert cli.json("project", "show", "alpha")["project"]["name"] == "alpha"
    assert "alpha" in cli.ok("project", "list").stdout

    again = cli.run("project", "create", "alpha")
    assert again.returncode == 1 and "already exists" in again.stderr

    assert cli.json("project", "delete", "beta") == {**_envelope(cli), "deleted": "beta"}
    assert [p["name"] for p in cli.json("project", "list")["projects"]] == ["alpha"]
    missing = cli.run("project", "show", "beta")
    assert missing.returncode == 4 and "no project 'beta'" in missing.stderr
    bad = cli.run("project", "create", "Not A Slug")
    assert bad.returncode == 2
    assert_one_error_line(bad)


def _envelope(cli: Cli) -> dict[str, Any]:
    state = cli.data.relative_to(cli.home) / "sim-state.json"
    return {"target": f"simulated cluster (embedded, state ~/{state})", "simulated": True}


# ---- machines: a fleet, power, delete ---------------------------------------------------------------


def test_a_fleet_is_deployed_listed_powered_and_deleted_by_name_and_vmid(cli: Cli) -> None:
    cli.ok("project", "create", "alpha")
    created = cli.json(
        "machine", "create", "--profile", "claude_code", "--project", "alpha", "--count", "3",
        "--label", "critical=true",
    )  # fmt: skip
    outcomes = created["outcomes"]
    assert [(o["name"], o["status"]) for o in outcomes] == [
        (f"claude-code-{i}", "deployed") for i in (1, 2, 3)
    ]
    assert created["interrupted"] is False
    machines = cli.machines()
    assert {name: m["status"] for name, m in machines.items()} == {
        f"claude-code-{i}": "running" for i in (1, 2, 3)
    }
    assert all(m["labels"] == {"critical": "true"} and m["project"] == "alpha" for m in machines.values())
    assert cli.audit(set(machines)) == set(machines)

    first_vmid = str(machines["claude-code-1"]["vmid"])
    stopped = cli.ok("machine", "stop", first_vmid)
    assert "is stopped" in stopped.stdout
    assert cli.machines()["claude-code-1"]["status"] == "stopped"
    assert cli.json("machine", "start", "claude-code-1")["machine"]["status"] == "running"
    shown = cli.json("machine", "show", first_vmid)["machine"]
    assert (shown["name"], shown["status"], shown["profile"]) == ("claude-code-1", "running", "claude_code")

    refused = cli.run("machine", "delete", "claude-code-2")  # stdin is not a terminal: --yes required
    assert refused.returncode == 2
    assert "--yes" in assert_one_error_line(refused)
    assert "claude-code-2" in cli.machines()

    # Deleting a critical machine is high risk: --yes alone only holds it for another identity's approval.
    held = cli.run("machine", "delete", first_vmid, "--yes")
    assert held.returncode == 3 and "needs an approval" in held.stderr
    request = held.stderr.split("request ")[1].split()[0]
    own = cli.run("approve", request)
    assert own.returncode == 3 and "cannot approve it too" in own.stderr  # the two-person rule
    cli.ok("user", "add", "bob")
    cli.ok("role", "bind", "bob", "admin")
    bob = cli.json("token", "create", "bob")["secret"]
    assert cli.run("approve", request, AUTOVIBE_TOKEN=bob).returncode == 0
    cli.ok("machine", "delete", first_vmid, "--yes", "--approval", request)
    reused = cli.run("machine", "delete", "claude-code-2", "--yes", "--approval", request)
    assert reused.returncode != 0 and "was for machine.delete on machine claude-code-1" in reused.stderr
    deleted = cli.json("machine", "delete", "claude-code-2", "--yes", "--approval", _approved(cli, bob))[
        "deleted"
    ]
    assert deleted["name"] == "claude-code-2"
    assert set(cli.machines()) == {"claude-code-3"}
    assert cli.vms_and_rows() == ({"claude-code-3"}, {"claude-code-3"})

    not_empty = cli.run("project", "delete", "alpha")
    assert not_empty.returncode == 1 and "claude-code-3" in not_empty.stderr
    gone = cli.run("machine", "show", "claude-code-1")
    assert gone.returncode == 4


def test_ops_list_show_and_resume_describe_the_journal(cli: Cli) -> None:
    cli.ok("project", "create", "alpha")
    cli.ok("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "solo")
    cli.ok("machine", "delete", "solo", "--yes")
    assert cli.json("ops", "list")["operations"] == []  # nothing unfinished
    operations = cli.json("ops", "list", "--all")["operations"]
    assert [(op["kind"], op["status"], op["params"]["name"]) for op in operations] == [
        ("machine.delete", "completed", "solo"),
        ("machine.deploy", "completed", "solo"),
    ]
    deploy_id = operations[1]["id"]
    shown = cli.json("ops", "show", deploy_id[:6])["operation"]
    assert shown["id"] == deploy_id
    assert [s["name"] for s in shown["steps"]][:4] == ["validate", "place", "quota", "clone"]
    assert all(s["status"] == "done" and s["finished_at"] for s in shown["steps"])
    human = cli.ok("ops", "show", deploy_id[:6]).stdout
    assert "register" in human and deploy_id in human
    resumed = cli.json("ops", "resume")
    assert resumed["resumed"] == [] and resumed["stuck"] == 0
    assert cli.run("ops", "show", "ffffffff").returncode == 4


# ---- bad input: exit 2, one line, nothing created ----------------------------------------------------


@pytest.fixture(scope="module")
def alpha_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One HOME with project alpha, shared by the bad-input cases (none of which may change it)."""
    cli = Cli(tmp_path_factory.mktemp("bad-input"))
    cli.ok("project", "create", "alpha")
    yield cli


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--profile", "nope"), "no profile named 'nope'"),
        (("--profile", "claude_code", "--project", "beta"), "no project 'beta'"),
        (("--profile", "claude_code", "--node", "pve9"), "node 'pve9' is not in the cluster"),
        (("--profile", "claude_code", "--cores", "0"), "--cores: must be at least 1"),
        (("--profile", "claude_code", "--memory", "lots"), "--memory: 'lots' is not a size"),
        (("--profile", "claude_code", "--name", "bad_name!"), "--name: 'bad_name!' is not a valid VM name"),
        (("--profile", "claude_code", "--disk", "5"), "--disk: 5 GiB is smaller than"),
        (("--profile", "claude_code", "--ttl", "8"), "--ttl: '8' is not a duration"),
    ],
    ids=["profile", "project", "node", "cores", "memory", "name", "disk", "ttl"],
)
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
    alpha_cli: Cli, flags: tuple[str, ...], expected: str
) -> None:
    result = alpha_cli.run("machine", "create", "--project", "alpha", *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in assert_one_error_line(result)
    machines, operations = alpha_cli.run_together(
        ("machine", "list", "--json"), ("ops", "list", "--all", "--json")
    )
    assert alpha_cli.parsed(machines)["machines"] == []
    assert alpha_cli.parsed(operations)["operations"] == []
    assert alpha_cli.audit(set()) == set()  # and no VM in PVE


# ---- store and hub -----------------------------------------------------------------------------------


def test_db_upgrade_migrates_and_never_shows_a_password(cli: Cli) -> None:
    result = cli.run("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"sqlite:///{cli.data / 'autovibe.db'}" in result.stdout
    assert cli.run("db", "upgrade").returncode == 0  # idempotent
    with socket.socket() as sock:  # bound, never listening: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"postgresql+psycopg://autovibe:hunter2-secret@127.0.0.1:{port}/autovibe"
        failed = cli.run("db", "upgrade", AUTOVIBE_DATABASE_URL=url)
    assert failed.returncode == 1
    assert "hunter2-secret" not in failed.stdout + failed.stderr
    assert f"autovibe:***@127.0.0.1:{port}" in failed.stdout + failed.stderr


def test_hub_tick_deletes_a_machine_once_its_lease_has_run_out(cli: Cli) -> None:
    # Leases use the wall clock. Instead of sleeping, each round reads the clock before and after a
    # `hub tick` and asserts only what that bracket decides: a tick that *ended* before the expiry
    # must keep the machine, one that *started* after it must delete it; the loop ends on deletion.
    cli.ok("project", "create", "alpha")
    cli.ok("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "keeper")
    extended = cli.json("machine", "lease", "keeper", "--extend", "4h")
    cli.ok("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "brief",
           "--ttl", "3s")  # fmt: skip
    expires = _utc(cli.json("machine", "show", "brief")["machine"]["expires_at"])
    assert _utc(extended["expires_at"]) - expires > 3.9 * 3600

    deadline = time.monotonic() + DEADLINE_S
    while True:
        before = time.time()
        expired = [e["name"] for e in cli.json("hub", "tick")["expired"]]
        after = time.time()
        if after < expires:
            assert expired == [], "a lease that has not run out was expired"
        if before >= expires:
            assert expired == ["brief"]
        assert expired in ([], ["brief"])
        if expired:
            break
        assert time.monotonic() < deadline, "the lease never expired"
    assert set(cli.machines()) == {"keeper"}
    assert cli.vms_and_rows() == ({"keeper"}, {"keeper"})
    [delete] = [op for op in cli.json("ops", "list", "--all")["operations"] if op["kind"] == "machine.delete"]
    assert (delete["params"]["name"], delete["params"]["reason"], delete["status"]) == (
        "brief",
        "lease expired",
        "completed",
    )
    assert "no lease has expired" in cli.ok("hub", "tick").stdout


def _utc(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# ---- Ctrl-C during a fleet ---------------------------------------------------------------------------


def _interrupted_fleet(cli: Cli, presses: int) -> tuple[int, str]:
    """Deploy 9 machines a few at a time (one task per node and per template), press Ctrl-C
    ``presses`` times as soon as the first machine is deployed (the second press once the first is
    acknowledged); return the exit code and stdout."""
    cli.ok("project", "create", "alpha")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autovibe", "machine", "create", "--profile", "claude_code",
         "--project", "alpha", "--name", "agent", "--count", "9"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        # One task per node and per template: the launch window (3 x 1 + 1) is far below 9 machines.
        env=cli.env(AUTOVIBE_TASKS_PER_NODE="1", AUTOVIBE_TASKS_PER_TEMPLATE="1"),
    )  # fmt: skip
    assert proc.stdout is not None
    seen, pressed = [], 0
    for line in proc.stdout:
        seen.append(line)
        first_done = line.endswith(": deployed\n") and pressed == 0
        if first_done or (line.startswith("stopping:") and pressed < presses):
            proc.send_signal(signal.SIGINT)
            pressed += 1
    code = proc.wait(timeout=DEADLINE_S)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert "Traceback" not in stderr, stderr
    return code, "".join(seen)


def test_ctrl_c_stops_starting_machines_and_lets_those_in_flight_finish(cli: Cli) -> None:
    cli.speed = "50"  # a deploy takes ~1 s, so the first Ctrl-C lands while others wait to start
    code, out = _interrupted_fleet(cli, presses=1)
    assert code == 130, out
    assert "stopping: no new machines will start" in out and "(stopped by Ctrl-C)" in out
    deployed = cli.audit({f"agent-{i}" for i in range(1, 10)})
    assert out.count(": deployed\n") == len(deployed)
    assert 1 <= len(deployed) < 9
    assert f"{9 - len(deployed)} skipped" in out


def test_a_second_ctrl_c_undoes_the_machines_in_flight(cli: Cli) -> None:
    cli.speed = "50"
    code, out = _interrupted_fleet(cli, presses=2)
    assert code == 130, out
    assert "cancelling: undoing every machine still in flight" in out
    deployed = cli.audit({f"agent-{i}" for i in range(1, 10)})  # undone ones left nothing behind
    assert out.count(": deployed\n") == len(deployed) < 9
    assert " stuck" not in out


# ---- the tour ----------------------------------------------------------------------------------------


def test_demo_deploys_a_fleet_reads_the_journal_and_enforces_a_quota(cli: Cli) -> None:
    result = cli.run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in (
        "Deployed 3 of 3",
        "claude-code-3: deployed",
        "machine.delete",
        "'claude-code-1' is running again, with 2 cores",
        "branched → claude-code-1-tuned",
        "    - ● you are here (running)",
        "machine create 'one-more' → refused: project 'demo' is",
        "stopped, lowest priority first: batch, claude-code-1",
        "spared (critical): keeper",
        "alerts sent: quota.warn, quota.throttle, quota.emergency_stop",
        "project 'demo' is back within its quotas",
        "What to try next",
    ):
        assert expected in result.stdout
    assert not cli.data.exists(), "the demo must not touch the user's simulator or store"
