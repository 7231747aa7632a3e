"""The hub's own surface: health, readiness, metrics, the one error body, rate limits, the breaker."""

from __future__ import annotations

from pathlib import Path

import httpx

from autovibe.api.app import create_app
from autovibe.hub.service import Hub
from autovibe.security.identity import add_user, bind, create_token, server_key_from
from tests.integration.api.conftest import API, ClientFor, hub_settings


async def test_health_readiness_and_openapi_need_no_token(admin: httpx.AsyncClient) -> None:
    bare = httpx.AsyncClient(transport=admin._transport, base_url="http://hub")  # type: ignore[attr-defined]
    assert (await bare.get("/healthz")).json() == {"status": "ok"}
    ready = (await bare.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["store"] == "ok" and ready["pve"] == "closed"
    assert ready["leader"] is True  # one replica on SQLite leads
    assert "/api/v1/machines" in (await bare.get("/openapi.json")).json()["paths"]
    refused = await bare.get(f"{API}/machines")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert set(refused.json()) == {"error", "message", "hint", "details"}
    await bare.aclose()


async def test_metrics_need_a_global_role(admin: httpx.AsyncClient, client_for: ClientFor) -> None:
    text = (await admin.get("/metrics")).text
    for family in ("autovibe_api_request_duration_seconds", "autovibe_hub_jobs", "autovibe_hub_leader"):
        assert family in text
    scoped = await client_for("viewer", "alpha")
    assert (await scoped.get("/metrics")).status_code == 403


async def test_rate_limit_per_token_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, rate_per_s=0.5, rate_burst=3)
    async with Hub.open(settings, loops=False) as hub:
        app = create_app(settings, hub=hub)
        add_user(hub.db, "eve")
        bind(hub.db, "eve", "viewer")
        _read, token = create_token(hub.db, "eve", key=server_key_from(tmp_path / "token.key"))
        _read, other = create_token(hub.db, "eve", key=server_key_from(tmp_path / "token.key"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            statuses = [
                (await client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {token}"})).status_code
                for _ in range(5)
            ]
            assert statuses == [200, 200, 200, 429, 429]
            limited = await client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {token}"})
            assert limited.json()["error"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            # The bucket is per token: another token of the same user is not held back.
            assert (
                await client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {other}"})
            ).status_code == 200


async def test_a_dead_pve_endpoint_fails_fast_with_503_and_recovers(tmp_path: Path) -> None:
    # PVE on a port nobody listens on: connection refused, the breaker opens after 2 failures.
    settings = hub_settings(tmp_path, breaker_failures=2, breaker_reset_s=3600)
    settings = settings.model_copy(
        update={"pve_url": "http://127.0.0.1:9", "pve_token": _pve_token(), "timeouts": settings.timeouts}
    )
    async with Hub.open(settings, loops=False) as hub:
        app = create_app(settings, hub=hub)
        add_user(hub.db, "ops")
        bind(hub.db, "ops", "admin")
        _read, token = create_token(hub.db, "ops", key=server_key_from(tmp_path / "token.key"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://hub",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            answers = [await client.get(f"{API}/machines") for _ in range(4)]
            assert [a.status_code for a in answers] == [503, 503, 503, 503]
            assert all(a.json()["error"] == "unavailable" for a in answers)
            assert "not trying again" in answers[-1].json()["message"]  # the open breaker answered
            assert "retry-after" in answers[-1].headers
            assert hub.breaker.state == "open"
            assert (await client.get("/readyz")).json()["pve"] == "open"
            # Store-only reads still work while PVE is away.
            assert (await client.get(f"{API}/projects")).status_code == 200


def _pve_token() -> object:
    from pydantic import SecretStr

    return SecretStr("root@pam!test=5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10")
