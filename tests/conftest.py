"""Fixtures every test may use: a hermetic environment and an in-process simulated cluster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from autovibe.sim.app import SimApp
from tests.fakes.simulated import SimDriver

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTOVIBE_* settings or proxies leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("AUTOVIBE_") or name in _PROXY_VARS:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sim() -> SimApp:
    """A fresh in-memory cluster with a frozen clock: time moves only when a test steps it."""
    return SimApp.open(None, speed=0)


@pytest.fixture
async def api(sim: SimApp) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client on /api2/json, authenticated with a root@pam API token."""
    token = sim.ensure_token("root@pam", "test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim),
        base_url="https://pve1:8006/api2/json",
        headers={"Authorization": f"PVEAPIToken={token}"},
    ) as client:
        yield client


@pytest.fixture
def driver(sim: SimApp, api: httpx.AsyncClient) -> SimDriver:
    return SimDriver(sim, api)
