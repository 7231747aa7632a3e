"""The job queue in the store: long work the API accepted, run by whichever replica claims it first.

A job is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL), so two replicas polling at
once never take the same one; on SQLite the write transaction (``BEGIN IMMEDIATE``) serialises claims.
Progress is kept as numbered events, so any replica can stream a job's progress, and a client that
reconnects resumes from the last event it saw.

Cancelling a queued job ends it at once (no replica claims it any more); cancelling a running one
records the request (``cancel_requested_at``), which the replica running it notices and acts on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autovibe.errors import AutovibeConflict, AutovibeNotFound
from autovibe.store.db import Database
from autovibe.store.tables import HubJob, HubJobEvent, utcnow


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobError(BaseModel):
    """Why a job failed (or ``cancelled``, by whom): the error kind (``invalid``, ``denied``...), its
    message and what to do."""

    kind: str
    message: str
    hint: str | None = None
    details: dict[str, Any] | None = None


class JobRead(BaseModel):
    id: str
    kind: str
    status: JobStatus
    params: dict[str, Any]
    actor: str
    project: str | None
    replica: str | None
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None = None
    cancel_requested_by: str | None = None


class JobEvent(BaseModel):
    """One progress event; ``seq`` counts from 1 per job (the SSE event id)."""

    seq: int
    at: datetime
    data: dict[str, Any]


class JobNotFound(AutovibeNotFound, KeyError):
    def __str__(self) -> str:
        return self.message


class JobFinished(AutovibeConflict):
    """The job already ended: there is nothing left to cancel (HTTP 409)."""


class JobQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(self, kind: str, params: dict[str, Any], *, actor: str, project: str | None) -> JobRead:
        with self.db.session() as session:
            row = HubJob(
                id=str(uuid.uuid4()),
                kind=kind,
                status=JobStatus.QUEUED,
                params=params,
                actor=actor,
                project=project,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _read(row)

    def claim(self, replica: str) -> JobRead | None:
        """Take the oldest queued job for ``replica``, or None. Never hands one job to two replicas."""
        with self.db.session() as session:
            row = session.scalars(
                select(HubJob)
                .where(HubJob.status == JobStatus.QUEUED)
                .order_by(HubJob.created_at, HubJob.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            row.status = JobStatus.RUNNING
            row.replica = replica
            row.started_at = utcnow()
            return _read(row)

    def cancel(self, job_id: str, *, by: str) -> JobRead:
        """Cancel a job: a queued one ends ``cancelled`` at once (and is never claimed); a running one
        gets ``cancel_requested_at``, for the replica running it to act on. A finished one raises
        :class:`JobFinished`; asking twice is harmless (the first request is kept)."""
        with self.db.session() as session:
            row = session.scalars(select(HubJob).where(HubJob.id == job_id).with_for_update()).first()
            if row is None:
                raise JobNotFound(f"no job '{job_id}'", hint="list jobs with GET /api/v1/jobs")
            status = JobStatus(row.status)
            if status.finished:
                raise JobFinished(
                    f"job {job_id} already ended ({status}); there is nothing to cancel",
                    hint=f"see it with GET /api/v1/jobs/{job_id}",
                )
            now = utcnow()
            if row.cancel_requested_at is None:
                row.cancel_requested_at, row.cancel_requested_by = now, by
            if status is JobStatus.QUEUED:
                row.status = JobStatus.CANCELLED
                row.finished_at = now
                row.error = cancelled_error(by, started=False).model_dump(mode="json")
                # Nobody else writes events of a job that is not running: numbering them here is safe.
                self._append(session, job_id, {"type": "status", "status": "cancelling", "by": by})
                self._append(session, job_id, {"type": "status", "status": "cancelled", "by": by})
            return _read(row)

    def cancel_requested(self, job_id: str) -> str | None:
        """Who asked to cancel this job, or None while nobody has."""
        with self.db.session() as session:
            row = session.get(HubJob, job_id)
            if row is None or row.cancel_requested_at is None:
                return None
            return row.cancel_requested_by or "someone"

    def emit(self, job_id: str, data: dict[str, Any]) -> int:
        """Record a progress event; only the replica running the job writes them, so seq is safe."""
        with self.db.session() as session:
            return self._append(session, job_id, data)

    @staticmethod
    def _append(session: Session, job_id: str, data: dict[str, Any]) -> int:
        last = session.scalar(select(func.max(HubJobEvent.seq)).where(HubJobEvent.job_id == job_id))
        seq = (last or 0) + 1
        session.add(HubJobEvent(job_id=job_id, seq=seq, at=utcnow(), data=data))
        return seq

    def events(self, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        with self.db.session() as session:
            rows = session.scalars(
                select(HubJobEvent)
                .where(HubJobEvent.job_id == job_id, HubJobEvent.seq > after)
                .order_by(HubJobEvent.seq)
                .limit(limit)
            ).all()
            return [JobEvent(seq=r.seq, at=r.at, data=dict(r.data)) for r in rows]

    def finish(
        self,
        job_id: str,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        cancelled: bool = False,
    ) -> JobRead:
        """Record the job's end: ``succeeded`` with a result, ``failed`` with an error (and maybe a
        partial result), or ``cancelled`` (its error says by whom; its result what it had done)."""
        with self.db.session() as session:
            row = session.get_one(HubJob, job_id)
            if cancelled:
                row.status = JobStatus.CANCELLED
            else:
                row.status = JobStatus.FAILED if error is not None else JobStatus.SUCCEEDED
            row.result = result
            row.error = error.model_dump(mode="json") if error is not None else None
            row.finished_at = utcnow()
            return _read(row)

    def get(self, job_id: str) -> JobRead:
        with self.db.session() as session:
            row = session.get(HubJob, job_id)
            if row is None:
                raise JobNotFound(f"no job '{job_id}'", hint="list jobs with GET /api/v1/jobs")
            return _read(row)

    def recent(
        self, *, limit: int = 100, status: JobStatus | None = None, actor: str | None = None
    ) -> list[JobRead]:
        with self.db.session() as session:
            query = select(HubJob).order_by(HubJob.created_at.desc(), HubJob.id).limit(limit)
            if status is not None:
                query = query.where(HubJob.status == status)
            if actor is not None:
                query = query.where(HubJob.actor == actor)
            return [_read(row) for row in session.scalars(query)]

    def counts(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(select(HubJob.status, func.count()).group_by(HubJob.status)).all()
            return {str(status): int(count) for status, count in rows}

    def fail_abandoned(self, replicas: set[str]) -> list[str]:
        """Fail the running jobs of replicas that died; their journaled operations are resumed (undone
        or finished) separately, so a job is never run twice."""
        if not replicas:
            return []
        with self.db.session() as session:
            rows = session.scalars(
                select(HubJob)
                .where(HubJob.status == JobStatus.RUNNING, HubJob.replica.in_(replicas))
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.status = JobStatus.FAILED
                row.finished_at = utcnow()
                row.error = JobError(
                    kind="unavailable",
                    message=f"the hub replica running this job ({row.replica}) stopped before it ended",
                    hint="its machine operations are resumed by the leader; see `autovibe ops list`",
                ).model_dump(mode="json")
            return [row.id for row in rows]


def cancelled_error(by: str, *, started: bool) -> JobError:
    """The ``error`` of a cancelled job: who cancelled it, and whether it had started."""
    if not started:
        return JobError(kind="cancelled", message=f"cancelled by {by} before it started")
    return JobError(
        kind="cancelled",
        message=f"cancelled by {by} while it ran; what it had started was undone",
        hint="`result` says what it did; see also `autovibe ops list`",
    )


def _read(row: HubJob) -> JobRead:
    return JobRead(
        id=row.id,
        kind=row.kind,
        status=JobStatus(row.status),
        params=dict(row.params),
        actor=row.actor,
        project=row.project,
        replica=row.replica,
        result=dict(row.result) if row.result is not None else None,
        error=JobError.model_validate(row.error) if row.error is not None else None,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cancel_requested_at=row.cancel_requested_at,
        cancel_requested_by=row.cancel_requested_by,
    )
