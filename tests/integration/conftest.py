"""Services wired to the in-process simulator and a SQLite store, as the CLI wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
