"""The FastAPI app of the hub: ``create_app(settings)`` for ``autovibe serve`` (the hub opens with the
app and closes with it), or ``create_app(settings, hub=...)`` around a hub someone else runs (tests).

Routes live under ``/api/v1``; ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` at the root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from autovibe import __version__, composition
from autovibe.api import errors
from autovibe.api.deps import API
from autovibe.api.metrics import HubMetrics, RequestTimer
from autovibe.api.ratelimit import RateLimiter
from autovibe.api.routers import ROUTERS, health
from autovibe.hub.service import Hub
from autovibe.settings import Settings
from autovibe.usage.metrics import PveRequestMetrics, new_registry

DESCRIPTION = """\
The autovibe hub: machines, checkpoints, usage and quotas, network isolation, operations, approvals and
the audit log of a Proxmox VE cluster, for people, CI jobs and agents with their own API tokens.

Every call under `/api/v1` needs `Authorization: Bearer avt_...` (`autovibe token create USER`).
Long work answers **202** with a job: follow its Server-Sent Events at `links.events`, or poll `links.job`.
Every error answers with one body: `{"error": kind, "message", "hint", "details"}`.
"""


def create_app(settings: Settings, *, hub: Hub | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if hub is not None:
            yield
            return
        async with Hub.open(settings) as running:
            _attach(app, running, settings)
            yield

    app = FastAPI(
        title="autovibe hub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    registry = new_registry(include_process=True)
    app.state.registry = registry
    app.state.hub_metrics = HubMetrics(registry)
    app.state.pve_metrics = PveRequestMetrics(registry)
    app.state.limiter = RateLimiter(settings.hub.rate_per_s, settings.hub.rate_burst)
    app.include_router(health.router)
    for router in ROUTERS:
        app.include_router(router, prefix=API, responses=errors.ERROR_RESPONSES)
    app.add_middleware(RequestTimer, metrics=app.state.hub_metrics)
    if hub is not None:
        _attach(app, hub, settings)  # usable at once, even where no lifespan runs (ASGITransport)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, made truthful: invalid requests answer 400 with our ``ErrorBody`` (see
    :mod:`autovibe.api.errors`), never FastAPI's 422 ``HTTPValidationError``, so those are removed and
    every operation that validates input documents the 400."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = FastAPI.openapi(app)  # builds and caches it in app.openapi_schema, fixed in place below
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = errors.INVALID_RESPONSE
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def _attach(app: FastAPI, hub: Hub, settings: Settings) -> None:
    app.state.hub = hub
    app.state.token_key = composition.token_key(settings)
    hub.connection.pve.observer = app.state.pve_metrics.observe
