"""``pve``: a real client on the root conftest's frozen in-memory ``sim`` (see ``simclient.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from autovibe.pve import PveClient
from autovibe.sim.app import SimApp
from tests.unit.cluster.simclient import client_for


@pytest.fixture
async def pve(sim: SimApp) -> AsyncIterator[PveClient]:
    async with client_for(sim, sim.ensure_token()) as client:
        yield client
