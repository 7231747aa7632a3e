"""What routes receive: the hub, the authenticated caller (bearer API token), rate limiting, and the
services' collaborators acting as that caller.

A request without a valid token is a 401 before any service runs; a caller over its rate is a 429
with ``Retry-After``. Use the ``Annotated`` aliases in route signatures::

    async def list_machines(caller: Caller, deps: Deps) -> list[MachineRead]: ...
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from autovibe.api.errors import ApiError
from autovibe.api.ratelimit import RateLimiter
from autovibe.hub.jobs import JobRead
from autovibe.hub.service import Hub
from autovibe.machines.deploy import MachineDeps
from autovibe.security.identity import Identity, authenticate

MACHINE_REF = r"^(?:[0-9]{1,9}|[A-Za-z0-9.-]*[A-Za-z.-][A-Za-z0-9.-]*)$"
"""A machine's vmid (ASCII digits, within the store's integers) or its name (PVE's VM name alphabet)."""
MachineRef = Annotated[
    str, Path(min_length=1, max_length=63, pattern=MACHINE_REF, description="The machine's name or vmid")
]
"""The ``{ref}`` path parameter of machine routes: anything else is a 400 before the store is asked."""

_bearer = HTTPBearer(auto_error=False, description="An autovibe API token: `autovibe token create USER`")
API = "/api/v1"


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def _rate_key(request: Request, token: str | None) -> str:
    if token and token.startswith("avt_") and token.count("_") >= 2:
        return "token:" + token.split("_", 2)[1]  # the token id: its secret never becomes a key
    return "client:" + (request.client.host if request.client else "unknown")


def caller(
    request: Request,
    hub: HubDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The identity behind the request's bearer token (401 without a valid one; 429 over its rate)."""
    token = credentials.credentials if credentials is not None else None
    wait = _limiter(request).take(_rate_key(request, token))
    if wait > 0:
        raise ApiError(
            "rate_limited",
            f"too many requests; try again in {wait:.1f} s",
            hint=f"the hub allows {hub.settings.hub.rate_per_s:g} requests/s per token (bursts of "
            f"{hub.settings.hub.rate_burst})",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if token is None:
        raise ApiError(
            "unauthorized",
            "this API needs a bearer token",
            hint="send `Authorization: Bearer avt_...`; an admin makes one: `autovibe token create USER`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return authenticate(hub.db, token, key=request.app.state.token_key, now=datetime.now(UTC))


Caller = Annotated[Identity, Depends(caller)]


def machine_deps(hub: HubDep, identity: Caller) -> MachineDeps:
    return hub.deps_for(identity)


Deps = Annotated[MachineDeps, Depends(machine_deps)]


class JobLinks(BaseModel):
    job: str
    events: str


class JobAccepted(BaseModel):
    """A 202 answer: the job runs in the background; follow ``links.events`` (Server-Sent Events) or
    poll ``links.job`` until its ``status`` is ``succeeded`` or ``failed``."""

    id: str
    kind: str
    status: str
    links: JobLinks


def accepted(job: JobRead) -> JSONResponse:
    """The 202 for a queued job, with ``Location`` pointing at it."""
    links = JobLinks(job=f"{API}/jobs/{job.id}", events=f"{API}/jobs/{job.id}/events")
    body = JobAccepted(id=job.id, kind=job.kind, status=str(job.status), links=links)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": links.job})


def submit(
    hub: Hub,
    identity: Identity,
    kind: str,
    params: dict[str, Any],
    *,
    action: str,
    target: str,
    project: str | None,
) -> JSONResponse:
    """Pre-check the caller's role for ``action`` (403 now, audited), then queue the job (202)."""
    hub.base_deps.security.precheck(identity, action, target=target, project=project, params=params)
    return accepted(hub.submit(kind, params, identity=identity, project=project))


ACCEPTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "Accepted: the work runs as a job"}
}
