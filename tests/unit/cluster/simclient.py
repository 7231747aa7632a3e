"""A real ``PveClient`` on an in-process simulator whose waits advance simulated time, not real time."""

from __future__ import annotations

import asyncio

import httpx

from autovibe.pve import PveClient, TokenAuth
from autovibe.sim.app import SimApp

SIM_URL = "https://pve1:8006"


def client_for(sim: SimApp, token: str) -> PveClient:
    """Through ``httpx.ASGITransport``; ``sleep`` steps the (frozen) simulator clock, so task polling
    ends at once and deterministically. Use with ``SimApp.open(None, speed=0)``."""

    async def advance(seconds: float) -> None:
        sim.clock.advance(seconds)
        await asyncio.sleep(0)

    return PveClient(
        SIM_URL,
        auth=TokenAuth(token),
        transport=httpx.ASGITransport(app=sim),
        sleep=advance,
        clock=sim.clock.now,
    )
