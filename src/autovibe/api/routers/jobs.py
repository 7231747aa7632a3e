"""Jobs: the long work the API accepted with a 202. Poll one, or follow its progress as Server-Sent
Events from any replica (events are in the store), resuming after ``Last-Event-ID``; cancel one (its
submitter, or whoever may resume operations in its project)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from autovibe.api.deps import Caller, HubDep
from autovibe.errors import AutovibeDenied
from autovibe.hub.jobs import JobNotFound, JobRead, JobStatus
from autovibe.hub.service import Hub
from autovibe.security import rbac
from autovibe.security.identity import Identity

router = APIRouter(prefix="/jobs", tags=["jobs"])
_log = structlog.get_logger("autovibe.api")

KEEPALIVE_S = 15.0


def _visible(identity: Identity, job: JobRead) -> bool:
    return job.actor == identity.name or rbac.can(identity, "ops.read", job.project)


def _job(hub: Hub, identity: Identity, job_id: str) -> JobRead:
    job = hub.jobs.get(job_id)
    if not _visible(identity, job):
        raise JobNotFound(f"no job '{job_id}'")  # not "forbidden": do not confirm it exists
    return job


@router.get("", response_model=list[JobRead])
def list_jobs(
    hub: HubDep,
    identity: Caller,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobRead]:
    """Recent jobs, newest first: yours, and those of projects you may read."""
    return [job for job in hub.jobs.recent(limit=limit, status=status) if _visible(identity, job)]


@router.get("/{job_id}", response_model=JobRead)
def get_job(hub: HubDep, identity: Caller, job_id: str) -> JobRead:
    """One job: its status, and its ``result`` or ``error`` once finished."""
    return _job(hub, identity, job_id)


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel_job(hub: HubDep, identity: Caller, job_id: str) -> JobRead:
    """Cancel a job. A queued one ends ``cancelled`` at once and never runs. A running one is asked to
    stop: the replica running it notices within ``hub.job_poll_s`` (its events: ``status`` cancelling),
    its operations undo what they had started (a fleet: machines in flight are undone, unstarted ones
    skipped), and it ends ``cancelled`` with what it did in ``result`` (events: ``status`` cancelled,
    then ``end``). Answers the job as it is now; a job that already ended is a 409.

    Allowed to the job's submitter, and to whoever holds ``ops.resume`` in the job's project."""
    job = _job(hub, identity, job_id)
    if job.actor != identity.name and not rbac.can(identity, "ops.resume", job.project):
        raise AutovibeDenied(
            f"{identity.name} may not cancel job {job_id} of {job.actor}",
            hint="only its submitter, or someone with ops.resume in its project, may cancel it",
        )
    cancelled = hub.jobs.cancel(job_id, by=identity.name)
    _log.info("hub.job_cancel_requested", job=job_id, by=identity.name, status=str(cancelled.status))
    return cancelled


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
def job_events(
    hub: HubDep,
    identity: Caller,
    job_id: str,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    after: Annotated[int, Query(ge=0, description="Resume after this event number")] = 0,
) -> StreamingResponse:
    """The job's progress as Server-Sent Events: ``status`` (running, succeeded, failed, cancelling,
    cancelled), ``step``
    (a machine's saga step), ``machine`` (a machine's end)..., each with ``id`` = its number, then one
    ``end`` event whose data is the finished job. Reconnect with ``Last-Event-ID`` to resume."""
    _job(hub, identity, job_id)
    start = max(after, last_event_id or 0)
    return StreamingResponse(
        _stream(hub, job_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(hub: Hub, job_id: str, after: int) -> AsyncIterator[str]:
    poll = hub.settings.hub.events_poll_s
    quiet = 0.0
    yield "retry: 2000\n\n"
    while True:
        # Read the status before the events: a job that finished after this read still has its last
        # events sent by the next round, never lost between the two reads.
        job = await asyncio.to_thread(hub.jobs.get, job_id)
        events = await asyncio.to_thread(hub.jobs.events, job_id, after=after)
        for event in events:
            after = event.seq
            kind = str(event.data.get("type", "message"))
            yield f"id: {event.seq}\nevent: {kind}\ndata: {json.dumps(event.data, default=str)}\n\n"
        if job.status.finished and not events:
            yield f"event: end\ndata: {job.model_dump_json()}\n\n"
            return
        if events:
            quiet = 0.0
            continue
        await asyncio.sleep(poll)
        quiet += poll
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keepalive\n\n"
