"""Services wired to the in-process simulator and a SQLite store, as the CLI wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import load_profiles
from autovibe.machines.scheduler import TaskGate
from autovibe.pve import PollPolicy, PveClient, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Project

FAST_POLL = PollPolicy(initial=0.05, maximum=0.05)


@pytest.fixture
def fast_sim() -> SimApp:
    """A simulated cluster whose clock runs 200x real time, so whole deploys take a fraction of a second."""
    return SimApp.open(None, speed=200)


@pytest.fixture
async def deps(fast_sim: SimApp, tmp_path: Path) -> AsyncIterator[MachineDeps]:
    db = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    with db.session() as session:
        session.add(Project(name="alpha", description="test project"))
    client = PveClient(
        "https://pve1:8006",
        auth=TokenAuth(fast_sim.ensure_token()),
        transport=httpx.ASGITransport(app=fast_sim),
    )
    async with client:
        yield MachineDeps(pve=client, db=db, gate=TaskGate(poll=FAST_POLL))
    db.dispose()


@pytest.fixture
def profiles():  # type: ignore[no-untyped-def]
    return load_profiles({})


# ---- simulated time ---------------------------------------------------------------------------------
# A simulator whose clock moves only when autovibe waits: every sleep (task polling, lock back-off)
# advances the simulated clock by exactly that long, and ``deps.now`` is the simulator's time, so hours
# of checkpoints, backups and usage run in milliseconds, the same way on every run.


@pytest.fixture
def stepped_sim() -> SimApp:
    return SimApp.open(None, speed=0)


@pytest.fixture
async def timed(stepped_sim: SimApp, tmp_path: Path) -> AsyncIterator[MachineDeps]:
    sim = stepped_sim

    async def sleep(seconds: float) -> None:
        sim.clock.advance(seconds)

    db = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    with db.session() as session:
        session.add(Project(name="alpha", description="test project"))
    client = PveClient(
        "https://pve1:8006",
        auth=TokenAuth(sim.ensure_token()),
        transport=httpx.ASGITransport(app=sim),
        sleep=sleep,
        clock=sim.clock.now,
    )
    async with client:
        yield MachineDeps(
            pve=client,
            db=db,
            gate=TaskGate(poll=PollPolicy(initial=1.0, maximum=1.0), sleep=sleep),
            now=lambda: datetime.fromtimestamp(sim.clock.now(), UTC),
        )
    db.dispose()
