"""Liveness, readiness and the Prometheus exposition (outside ``/api/v1``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text

from autovibe.api.deps import HubDep, caller
from autovibe.api.errors import ERROR_RESPONSES
from autovibe.errors import AutovibeError
from autovibe.security import rbac
from autovibe.security.identity import Identity
from autovibe.usage import service as usage
from autovibe.usage.metrics import CONTENT_TYPE, DomainCollector, exposition

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """``ready`` when the store answers; ``leader`` says whether this replica runs the scheduler and
    ``pve`` the state of the circuit breaker in front of PVE (``closed`` is healthy)."""

    status: str
    replica: str
    leader: bool
    store: str
    pve: str
    jobs: dict[str, int]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (liveness): no dependency is checked."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(hub: HubDep) -> Any:
    """Ready to serve: the store answers (PVE being away does not make the hub unready: reads of the
    store still work, and calls to PVE fail fast with 503 while the breaker is open)."""
    try:
        await asyncio.to_thread(_ping, hub)
        jobs = await asyncio.to_thread(hub.jobs.counts)
        store = "ok"
    except AutovibeError as exc:
        store, jobs = f"unavailable: {exc.message}", {}
    body = Readiness(
        status="ready" if store == "ok" else "unready",
        replica=hub.replica,
        leader=hub.is_leader,
        store=store,
        pve=str(hub.breaker.state),
        jobs=jobs,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if store == "ok" else 503)


def _ping(hub: Any) -> None:
    with hub.db.session() as session:
        session.execute(text("SELECT 1"))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}, **ERROR_RESPONSES},
)
async def metrics(request: Request, hub: HubDep, _identity: Annotated[Identity, Depends(caller)]) -> Response:
    """The Prometheus text exposition: usage, quotas and levels per project, machines by state,
    operations, PVE request latency and errors, API requests, jobs, leadership. Needs the token of a user
    with a global role (it shows every project): Prometheus sends it with `authorization:
    {credentials_file: ...}`."""
    rbac.check(_identity, "usage.read", None)  # it shows every project: a global role only
    projects, machines, operations = await usage.metric_figures(hub.metered_deps(_identity))
    registry = request.app.state.registry
    collector = getattr(request.app.state, "domain_collector", None)
    if collector is None:
        collector = request.app.state.domain_collector = DomainCollector(registry)
    collector.update(projects=projects, machines=machines, operations=operations)
    request.app.state.hub_metrics.refresh(hub)
    return Response(exposition(registry), media_type=CONTENT_TYPE)
