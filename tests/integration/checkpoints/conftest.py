"""Checkpoint services on a simulator whose clock moves only when autovibe waits.

Every sleep (task polling, lock back-off) advances the simulated clock by exactly that long, and
``deps.now`` is the simulator's time: hours of checkpoints and backups run in milliseconds, the same
way on every run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autovibe.machines.deploy import MachineDeps
from autovibe.machines.scheduler import TaskGate
from autovibe.pve import PollPolicy, PveClient, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Project


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
