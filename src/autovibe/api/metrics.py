"""The hub's own metrics, beside the domain ones (usage, quotas, machines, operations, PVE calls):
API requests by route and status, jobs by status, who leads, and the PVE circuit breaker."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from autovibe.hub.service import Hub

API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Histogram(
            "autovibe_api_request_duration_seconds",
            "Time to answer one hub API request, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
            buckets=API_BUCKETS,
        )
        self.jobs = Gauge("autovibe_hub_jobs", "Hub jobs by status.", ["status"], registry=registry)
        self.leader = Gauge("autovibe_hub_leader", "1 if this replica runs the scheduler.", registry=registry)
        self.breaker_open = Gauge(
            "autovibe_hub_pve_breaker_open",
            "1 while the PVE circuit breaker fails calls fast.",
            registry=registry,
        )

    def refresh(self, hub: Hub) -> None:
        counts = hub.jobs.counts()
        for status in ("queued", "running", "succeeded", "failed", "cancelled"):
            self.jobs.labels(status).set(counts.get(status, 0))
        self.leader.set(1 if hub.is_leader else 0)
        self.breaker_open.set(0 if hub.breaker.state == "closed" else 1)


class RequestTimer:
    """Pure ASGI middleware (no per-request task, unlike ``BaseHTTPMiddleware``) timing each request by
    its route template, so ``/machines/{ref}`` is one series, not one per machine."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status[0])).observe(
                time.perf_counter() - started
            )
