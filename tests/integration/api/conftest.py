"""The hub in process: a real ``Hub`` (store, embedded simulator, job workers) behind the FastAPI app,
called through ``httpx.ASGITransport`` with real API tokens of real users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.api.app import create_app
from autovibe.hub.service import Hub
from autovibe.machines.models import ProjectCreate
from autovibe.machines.projects import create as create_project
from autovibe.security.identity import add_user, bind, create_token, server_key_from
from autovibe.settings import HubSettings, Settings
from tests.fakes.sse import aevents

API = "/api/v1"
ClientFor = Callable[..., Awaitable[httpx.AsyncClient]]


def hub_settings(tmp: Path, **hub: Any) -> Settings:
    values: dict[str, Any] = {
        "tick_interval_s": 3600.0,  # tests run scheduler passes themselves
        "job_poll_s": 0.05,
        "events_poll_s": 0.02,
        "leader_poll_s": 0.2,
        "heartbeat_s": 0.2,
        "rate_per_s": 10_000.0,
        "rate_burst": 10_000,
        **hub,
    }
    return Settings(
        data_dir=tmp / "data",
        sim_state_path=tmp / "sim-state.json",
        sim_speed=500.0,
        token_key_file=tmp / "token.key",
        hub=HubSettings(**values),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return hub_settings(tmp_path)


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    async with Hub.open(settings) as running:
        create_project(db=running.db, request=ProjectCreate(name="alpha"))
        create_project(db=running.db, request=ProjectCreate(name="beta"))
        yield running


@pytest.fixture
async def client_for(hub: Hub, settings: Settings) -> AsyncIterator[ClientFor]:
    """``await client_for("operator", "alpha")``: a client with the token of a new user bound to that
    role (globally when no project is given). ``client_for(None)`` has a user without any role."""
    app = create_app(settings, hub=hub)
    key = server_key_from(settings.token_key_file)  # type: ignore[arg-type]
    made: list[httpx.AsyncClient] = []
    count = 0

    async def make(role: str | None = "admin", project: str | None = None) -> httpx.AsyncClient:
        nonlocal count
        count += 1
        name = f"{role or 'nobody'}-{project or 'global'}-{count}"
        add_user(hub.db, name)
        if role is not None:
            bind(hub.db, name, role, project)
        _read, secret = create_token(hub.db, name, key=key)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://hub",
            headers={"Authorization": f"Bearer {secret}"},
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def admin(client_for: ClientFor) -> httpx.AsyncClient:
    return await client_for("admin")


async def follow(
    client: httpx.AsyncClient, job_id: str
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Read a job's Server-Sent Events to the end: the (event, data) pairs and the finished job."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", f"{API}/jobs/{job_id}/events") as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for kind, payload in aevents(response.aiter_lines()):
            if kind == "end":
                return events, payload
            events.append((kind, payload))
    raise AssertionError("the event stream ended without an 'end' event")


async def run_job(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Submit long work, expect 202, follow it to its end; returns the finished job."""
    response = await client.request(method, f"{API}{path}", **kwargs)
    assert response.status_code == 202, response.text
    _events, job = await follow(client, response.json()["id"])
    return job
