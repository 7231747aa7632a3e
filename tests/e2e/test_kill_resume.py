"""SIGKILL the CLI in the middle of a fleet deploy; ``autovibe ops resume`` leaves a clean cluster.

Issue 3, second "Done when" line. ``autovibe machine create --count 6`` runs as a subprocess against the
embedded simulator persisted in a temporary data dir (so the killed process, ``ops resume`` and this
test share one simulated cluster and one SQLite store). The test watches the journal in that store
until the first operation reaches the kill point, sends SIGKILL, runs ``ops resume``, and then checks
by listing PVE that every machine is running and recorded or absent from both, that no VM name exists
twice, and that ``ops list`` shows nothing unfinished.

Kill points (one operation of the six; the others are wherever they are): the clone task still copying
when ``ops resume`` starts; configure, resize, start running; the machine row committed but the
register step not marked done; every step done but the operation not marked completed (resume must
keep that machine); and, with one configure write failing, in the middle of undoing that machine.

Some kill points last only the microseconds between two journal writes. For those, the test adds a
trigger to the store that burns CPU inside the transaction that would *leave* the kill point, so the
point stays observable until the kill (which rolls that transaction back, as a kill there would). The
saga's code is untouched; only the time between two of its writes grows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autovibe.machines.deploy import KIND as DEPLOY_KIND
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus, StepStatus
from autovibe.sim.app import SimApp
from autovibe.sim.faults import FaultPlan, RequestFault
from autovibe.store.db import Database, sqlite_url
from tests.fakes.cluster_audit import audit_sim

pytestmark = pytest.mark.e2e

SPEED = 20  # simulated seconds per real second: a full clone of 9000 takes ~1.1 s, a start 0.15 s
FLEET = 6
NAMES = {f"agent-{i}" for i in range(1, FLEET + 1)}
DEADLINE_S = 60.0
# About 3 s of CPU. The kill comes within milliseconds of seeing the point, so this only has to
# outlast one poll of the journal; a slower machine only holds the point longer.
_BURN = (
    "SELECT count(*) FROM (WITH RECURSIVE n(i) AS "
    "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000000) SELECT i FROM n)"
)


@dataclass(frozen=True)
class OpView:
    """A deploy operation as the journal holds it right now."""

    id: str
    name: str
    status: str
    state: dict[str, Any]
    steps: dict[str, str]  # step name -> status
    recorded: bool  # the store has its machine row


class JournalReader:
    """Reads the journal with plain SQLite reads, which never wait for the CLI's transactions.

    (The store API begins every transaction with ``BEGIN IMMEDIATE``, reads included, so it would
    queue behind the very write the test is holding open.)
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)

    def close(self) -> None:
        self._conn.close()

    def deploys(self) -> list[OpView]:
        ops: dict[str, OpView] = {}
        query = (
            "SELECT o.id, o.params, o.status, o.state, m.id IS NOT NULL, s.name, s.status FROM operations o "
            "JOIN operation_steps s ON s.operation_id = o.id "
            "LEFT JOIN machines m ON m.operation_id = o.id WHERE o.kind = ? ORDER BY o.created_at"
        )
        rows = self._conn.execute(query, (DEPLOY_KIND,))
        for op_id, params, status, state, recorded, step, step_status in rows:
            name = json.loads(params)["name"]
            view = ops.setdefault(op_id, OpView(op_id, name, status, json.loads(state), {}, bool(recorded)))
            view.steps[step] = step_status
        return list(ops.values())

    def first(self, test: Callable[[OpView], bool]) -> OpView | None:
        return next((op for op in self.deploys() if test(op)), None)

    def get(self, op_id: str) -> OpView:
        found = self.first(lambda op: op.id == op_id)
        assert found is not None, op_id
        return found


@dataclass(frozen=True)
class KillPoint:
    """Kill when an operation's ``step`` has ``status`` while the operation has ``op_status``, and,
    when ``recorded`` is set, once its machine row is (or while it is not yet) in the store."""

    step: str
    status: StepStatus
    op_status: OpStatus = OpStatus.RUNNING
    recorded: bool | None = None
    speed: float = SPEED
    # "step" or "operation": hold the CLI in the write that leaves the kill point (see the docstring).
    hold: str | None = None
    faults: FaultPlan | None = None  # injected into the simulated cluster before the deploy

    def reached(self, op: OpView) -> bool:
        return (
            op.status == self.op_status
            and op.steps[self.step] == self.status
            and self.recorded in (None, op.recorded)
        )

    def hold_sql(self) -> str | None:
        if self.hold == "step":  # the update that ends the step (done or failed)
            table, when = "operation_steps", f"OLD.name = '{self.step}' AND OLD.status = 'running'"
        elif self.hold == "operation":  # the update that marks the whole operation completed
            table, when = "operations", "NEW.status = 'completed'"
        else:
            return None
        return f"CREATE TRIGGER hold AFTER UPDATE OF status ON {table} WHEN {when} BEGIN {_BURN}; END"


KILL_POINTS = {
    # The clone task is still copying in the simulator when the CLI dies; resume must wait for it.
    # Slower, so that the copy is still running when `ops resume` starts a second later.
    "clone": KillPoint("clone", StepStatus.RUNNING, speed=5),
    # PVE has the new config; the journal does not know yet.
    "configure": KillPoint("configure", StepStatus.RUNNING, hold="step"),
    "resize": KillPoint("resize", StepStatus.RUNNING, hold="step"),
    # The start task runs (the VM may come up after the kill).
    "start": KillPoint("start", StepStatus.RUNNING),
    # The machine row is committed, the step is not marked done: a record that must not dangle.
    "register": KillPoint("register", StepStatus.RUNNING, recorded=True, hold="step"),
    # Every step is done, the operation is not marked completed: resume must keep the machine.
    "registered": KillPoint("register", StepStatus.DONE, recorded=True, hold="operation"),
    # One configure write fails; the CLI dies while undoing that machine (its delete task running).
    "undo": KillPoint(
        "clone",
        StepStatus.COMPENSATING,
        op_status=OpStatus.COMPENSATING,
        faults=FaultPlan(requests=[RequestFault("PUT", "/nodes/*/qemu/*/config", "http_500", times=1)]),
    ),
}


@dataclass
class Cli:
    """``python -m autovibe`` with a private data dir (store + simulator state) and no user config."""

    home: Path
    speed: float = SPEED

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "autovibe.db"

    @property
    def sim_state(self) -> Path:
        return self.data_dir / "sim-state.json"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "xdg-data"),
            "AUTOVIBE_DATA_DIR": str(self.data_dir),
            "AUTOVIBE_SIM_SPEED": str(self.speed),
            "PYTHONUNBUFFERED": "1",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "autovibe", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=DEADLINE_S
        )

    def ok_json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.home / "deploy.log").open("wb")  # a file, not a pipe nobody drains
        try:
            return subprocess.Popen(self.argv(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir where ``autovibe project create alpha`` ran (store migrated, cluster created)."""
    cli = Cli(tmp_path_factory.mktemp("seed"))
    created = cli.run("project", "create", "alpha")
    assert created.returncode == 0, created.stderr
    return cli.data_dir


@pytest.fixture
def cli(tmp_path: Path, seeded: Path) -> Cli:
    cli = Cli(tmp_path)
    shutil.copytree(seeded, cli.data_dir)
    return cli


@pytest.fixture
def store(cli: Cli) -> Iterator[Database]:
    """The CLI's store, read (never migrated) by the test while the CLI writes it."""
    db = Database.open(sqlite_url(cli.store_path), migrate=False)
    yield db
    db.dispose()


def wait_for(what: str, probe: Callable[[], Any]) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
    raise AssertionError(f"timed out waiting for {what}")


def sim_at_now(cli: Cli) -> SimApp:
    """The persisted cluster as of this instant (clock frozen, tasks replayed to now; nothing saved)."""
    sim = SimApp.open(cli.sim_state, speed=0)
    sim.cluster.advance(sim.clock.now())
    return sim


def cloning(cli: Cli, vmid: int) -> bool:
    guest = sim_at_now(cli).cluster.guests.get(vmid)
    return guest is not None and guest.lock == "clone"


def arm(cli: Cli, kill: KillPoint) -> None:
    """Speed, faults and the hold trigger this kill point needs, set before the deploy starts."""
    cli.speed = kill.speed
    if kill.faults is not None:
        sim = SimApp.open(cli.sim_state, speed=kill.speed)
        sim.cluster.faults = kill.faults
        sim.save()
    hold = kill.hold_sql()
    if hold is not None:
        with closing(sqlite3.connect(cli.store_path, isolation_level=None)) as db:
            db.execute(hold)


def deploy_and_kill(cli: Cli, kill: KillPoint) -> OpView:
    """Start the fleet deploy, SIGKILL it when the first operation reaches ``kill``; that operation,
    as the journal holds it after the kill."""
    reader = JournalReader(cli.store_path)
    deploy = cli.start(
        "machine", "create", "--profile", "claude_code", "--project", "alpha",
        "--name", "agent", "--count", str(FLEET),
    )  # fmt: skip
    try:
        victim = wait_for(f"an operation at {kill.step}={kill.status}", lambda: reader.first(kill.reached))
        if kill.step == "clone" and kill.status is StepStatus.RUNNING:  # until PVE is copying
            vmid = wait_for("its VMID", lambda: reader.get(victim.id).state.get("vmid"))
            wait_for("the clone to reach PVE", lambda: cloning(cli, vmid))
    finally:
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(timeout=DEADLINE_S)
    assert deploy.returncode == -signal.SIGKILL
    with closing(sqlite3.connect(cli.store_path, isolation_level=None)) as db:
        db.execute("DROP TRIGGER IF EXISTS hold")
    try:
        return reader.get(victim.id)
    finally:
        reader.close()


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_mid_fleet_then_resume_leaves_a_clean_cluster(cli: Cli, store: Database, point: str) -> None:
    kill = KILL_POINTS[point]
    arm(cli, kill)
    victim = deploy_and_kill(cli, kill)

    # The kill landed where it was meant to and left work behind: an unfinished operation, and a VM
    # that would be an orphan (or, for "clone", a copy still running) if nobody resumed it.
    assert kill.reached(victim), victim
    vmid = victim.state["vmid"]
    journal = Journal(store)
    unfinished = {op.id for op in journal.recent(unfinished=True)}
    assert victim.id in unfinished
    guest = sim_at_now(cli).cluster.guests.get(vmid)
    assert guest is not None, f"VM {vmid} should exist when resume starts"
    if point == "clone":
        assert guest.lock == "clone", "the clone task should still be running when resume starts"

    resumed = cli.ok_json("ops", "resume")
    assert resumed["stuck"] == 0, resumed
    assert {op["id"] for op in resumed["resumed"]} == unfinished
    assert cli.ok_json("ops", "list")["operations"] == []

    found = asyncio.run(audit_sim(sim_at_now(cli), store))
    deployed = found.assert_clean(NAMES)
    after = journal.get(victim.id).status
    if point == "registered":  # every step was done: resume keeps the machine
        assert after is OpStatus.COMPLETED and victim.name in deployed
    else:
        assert after is OpStatus.COMPENSATED and victim.name not in deployed
        assert vmid not in {guest.vmid for guest in found.guests}
