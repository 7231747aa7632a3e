"""The running hub: one PVE connection (behind a circuit breaker), the store, and three loops.

- **workers** (every replica): claim queued jobs (``SKIP LOCKED``) and run them as their submitter;
- **heartbeat and lead** (every replica): beat, and try to take the scheduler lead;
- **scheduler** (the leader only): a pass every ``hub.tick_interval_s`` (usage, checkpoints, network,
  leases), after failing the jobs of replicas that died and resuming their journaled operations.

A job's operations are journaled under this process as owner, like the CLI's, so a replica killed
mid-deploy leaves operations that the leader (or ``autovibe ops resume``) undoes.

A running job is watched for a cancel request (``POST /jobs/{id}/cancel``, from any replica) every
``hub.job_poll_s``; when one comes, its task is cancelled, so the operations runner undoes what it had
started (a fleet: machines in flight are undone, unstarted ones skipped), and the job ends ``cancelled``
with what it did as its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from autovibe import composition
from autovibe.composition import Connection
from autovibe.errors import AutovibeError, error_kind
from autovibe.hub.handlers import CANCEL_REPORTS, JobContext, JobPartlyFailed, load_all
from autovibe.hub.jobs import JobError, JobQueue, JobRead, cancelled_error
from autovibe.hub.leader import Leadership, Replicas
from autovibe.hub.tick import TickOutcome, run_pass
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import Profile
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus
from autovibe.operations.owner import this_process
from autovibe.operations.runner import Runner
from autovibe.pve.breaker import CircuitBreaker
from autovibe.security.gate import HUB, ApprovalRequired
from autovibe.security.identity import Identity, identity_of
from autovibe.settings import Settings
from autovibe.store.db import Database

_log = structlog.get_logger("autovibe.hub")


class Hub:
    """Build with :meth:`open`; ``deps_for(identity)`` gives services their collaborators."""

    def __init__(
        self, settings: Settings, db: Database, connection: Connection, breaker: CircuitBreaker
    ) -> None:
        self.settings = settings
        self.db = db
        self.connection = connection
        self.breaker = breaker
        connection.pve.resources_ttl_s = settings.hub.pve_resources_ttl_s
        self.replica = this_process()
        self.jobs = JobQueue(db)
        self.leadership = Leadership(db)
        self.replicas = Replicas(db, self.replica)
        self.profiles: Mapping[str, Profile] = composition.profiles(settings)
        self.base_deps: MachineDeps = composition.machine_deps(
            settings, connection.pve, db, clock=connection.clock
        )
        self.handlers = load_all()
        self.last_tick: datetime | None = None
        self.last_tick_outcome: TickOutcome | None = None
        self._running: set[str] = set()
        self._wake = asyncio.Event()
        self._passed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- life ------------------------------------------------------------------------------------
    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, loops: bool = True) -> AsyncIterator[Hub]:
        """Open the store (migrated) and the PVE connection; with ``loops``, run the workers, the
        heartbeat and the scheduler until the block ends (jobs in flight are cancelled, which undoes
        their operations)."""
        hub_settings = settings.hub
        breaker = CircuitBreaker(
            failures=hub_settings.breaker_failures, reset_after_s=hub_settings.breaker_reset_s
        )
        db = composition.open_store(settings)
        try:
            async with composition.open_connection(settings, breaker=breaker) as connection:
                hub = cls(settings, db, connection, breaker)
                if loops:
                    hub.start()
                try:
                    yield hub
                finally:
                    await hub.stop()
        finally:
            db.dispose()

    def start(self, *, lead: bool = True) -> None:
        """Run the job workers and (``lead``) the heartbeat-and-lead loop with the scheduler."""
        self.replicas.beat(leader=False)
        self._tasks = [asyncio.create_task(self._lead_loop(), name="hub-lead")] if lead else []
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"hub-worker-{i}")
            for i in range(self.settings.hub.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self.leadership.release()
        with contextlib.suppress(AutovibeError):
            self.replicas.leave()

    # ---- collaborators ---------------------------------------------------------------------------
    def deps_for(self, identity: Identity) -> MachineDeps:
        return dataclasses.replace(self.base_deps, identity=identity)

    def metered_deps(self, identity: Identity) -> MachineDeps:
        """Collaborators whose ``now`` is the target's time: usage reports, quotas and metrics."""
        return dataclasses.replace(self.base_deps, identity=identity, now=self.now)

    def now(self) -> datetime:
        """The target's time (the simulator's own for the embedded one): usage periods use it."""
        return datetime.fromtimestamp(self.connection.clock(), UTC)

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    def submit(
        self, kind: str, params: dict[str, Any], *, identity: Identity, project: str | None
    ) -> JobRead:
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        job = self.jobs.submit(kind, params, actor=identity.name, project=project)
        self._wake.set()  # a local worker takes it at once instead of at its next poll
        return job

    # ---- loops -----------------------------------------------------------------------------------
    async def _lead_loop(self) -> None:
        hub = self.settings.hub
        next_tick = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                was_leader = self.is_leader
                leading = await asyncio.to_thread(self.leadership.try_lead)
                if leading and not was_leader:
                    _log.info("hub.leader", replica=self.replica)
                    next_tick = 0.0
                elif was_leader and not leading:
                    _log.warning("hub.lost_lead", replica=self.replica)
                self.replicas.beat(leader=leading)
                if leading:
                    # Every round, not every tick: a dead replica's half-done deploys are undone soon.
                    await self.recover_dead_replicas()
                if leading and loop.time() >= next_tick:
                    await self.scheduler_pass()
                    next_tick = loop.time() + hub.tick_interval_s
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass must not end the loop: log it, try again next time
                _log.exception("hub.lead_loop_failed", replica=self.replica)
            await asyncio.sleep(min(hub.leader_poll_s, hub.heartbeat_s))

    async def scheduler_pass(self) -> TickOutcome:
        """What the leader does every ``tick_interval_s``: one scheduler pass (see ``hub.tick``)."""
        outcome = await run_pass(self.settings, self.base_deps, self.connection.clock)
        self.last_tick, self.last_tick_outcome = datetime.now(UTC), outcome
        if outcome.usage_error:
            _log.warning("hub.usage_pass_failed", error=outcome.usage_error)
        self._passed.set()  # wake whoever waits for this pass, then arm the next one
        self._passed = asyncio.Event()
        return outcome

    async def next_pass(self) -> TickOutcome:
        """Wait for the leader's next scheduler pass to end (tests and tools; this replica must lead)."""
        await self._passed.wait()
        assert self.last_tick_outcome is not None
        return self.last_tick_outcome

    async def recover_dead_replicas(self) -> list[str]:
        """Fail the jobs of replicas whose heartbeat stopped and resume (undo or finish) their journaled
        operations. Returns the ids of the operations resumed."""
        timeout = timedelta(seconds=self.settings.hub.replica_timeout_s)
        dead = self.replicas.dead(timeout) - {self.replica}
        failed = self.jobs.fail_abandoned(dead)
        if failed:
            _log.warning("hub.jobs_abandoned", jobs=failed, replicas=sorted(dead))
        journal = Journal(self.db)
        deps = self.deps_for(HUB)
        runner = Runner(journal, deps)
        resumed = []
        for record in journal.orphans(dead_owners=dead):
            if record.owner == self.replica or record.status is OpStatus.STUCK:
                continue  # ours run right here; a stuck one needs a person (`autovibe ops resume`)
            try:
                with deps.security.guard_sync(
                    HUB, "ops.resume", target=f"operation {record.id} ({record.kind})"
                ):
                    after = await runner.resume(record)
                resumed.append(after.id)
            except AutovibeError as exc:
                _log.warning("hub.resume_failed", operation=record.id, error=exc.message)
        return resumed

    async def _worker(self) -> None:
        poll = self.settings.hub.job_poll_s
        while True:
            try:
                job = await asyncio.to_thread(self.jobs.claim, self.replica)
            except AutovibeError as exc:  # the store is away: wait and look again
                _log.warning("hub.claim_failed", error=exc.message)
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=poll)
                continue
            await self.run_job(job)

    async def run_job(self, job: JobRead) -> JobRead:
        """Run one claimed job to its end and record the result or the error (never raises, except
        on cancellation of this hub, when the job is recorded as failed first).

        While it runs, a watcher looks for a cancel request every ``hub.job_poll_s``; one cancels the
        handler's task (its operations undo what they did) and the job ends ``cancelled``."""
        self._running.add(job.id)
        emit = _emitter(self.jobs, job.id)
        cancelled_by: list[str] = []
        watcher: asyncio.Task[None] | None = None
        try:
            emit({"type": "status", "status": "running", "replica": self.replica})
            identity = identity_of(self.db, job.actor)  # re-checked: the user may be disabled since
            deps = self.deps_for(identity)
            context = JobContext(job.id, dict(job.params), deps, self.settings, self.profiles, emit, self.now)
            work = asyncio.ensure_future(self.handlers[job.kind](context))
            watcher = asyncio.create_task(
                self._watch_cancel(job.id, work, emit, cancelled_by), name=f"hub-cancel-watch-{job.id}"
            )
            result = await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if cancelled_by and (current is None or not current.cancelling()):
                return self._finish_cancelled(job, cancelled_by[0], emit)
            self.jobs.finish(
                job.id, error=JobError(kind="unavailable", message="the hub stopped while it ran")
            )
            raise
        except Exception as exc:
            error = _job_error(exc)
            if error.kind == "internal":
                _log.exception("hub.job_crashed", job=job.id, kind=job.kind)
            emit({"type": "status", "status": "failed", "error": error.model_dump(mode="json")})
            partial = exc.result if isinstance(exc, JobPartlyFailed) else None
            return self.jobs.finish(job.id, result=partial, error=error)
        finally:
            if watcher is not None:
                watcher.cancel()
            self._running.discard(job.id)
        emit({"type": "status", "status": "succeeded"})
        return self.jobs.finish(job.id, result=result)

    async def _watch_cancel(
        self,
        job_id: str,
        work: asyncio.Future[Any],
        emit: Callable[[dict[str, Any]], None],
        cancelled_by: list[str],
    ) -> None:
        """Every ``hub.job_poll_s`` until ``work`` ends: was the job asked to cancel? Then cancel it
        (once; what the task undoes meanwhile is its own business) and say so in its events."""
        poll = self.settings.hub.job_poll_s
        while not work.done():
            await asyncio.sleep(poll)
            try:
                by = await asyncio.to_thread(self.jobs.cancel_requested, job_id)
            except AutovibeError as exc:  # the store is away: look again next time
                _log.warning("hub.cancel_check_failed", job=job_id, error=exc.message)
                continue
            if by is not None and work.cancel():
                cancelled_by.append(by)
                _log.info("hub.job_cancelling", job=job_id, by=by)
                emit({"type": "status", "status": "cancelling", "by": by})
                return

    def _finish_cancelled(self, job: JobRead, by: str, emit: Callable[[dict[str, Any]], None]) -> JobRead:
        """The job's task ended cancelled (its operations undid what they had started): record what it
        did as the result, and end it ``cancelled``."""
        try:
            result = _cancelled_result(self.jobs, job)
        except AutovibeError as exc:  # the report is best effort; the end of the job is what counts
            _log.warning("hub.cancel_report_failed", job=job.id, error=exc.message)
            result = None
        for outcome in (result or {}).get("outcomes", []):  # a fleet's, as its ``machine`` events
            emit({"type": "machine", **outcome})
        emit({"type": "status", "status": "cancelled", "by": by})
        _log.info("hub.job_cancelled", job=job.id, by=by)
        return self.jobs.finish(
            job.id, result=result, error=cancelled_error(by, started=True), cancelled=True
        )


def _emitter(jobs: JobQueue, job_id: str) -> Callable[[dict[str, Any]], None]:
    def emit(data: dict[str, Any]) -> None:
        try:
            jobs.emit(job_id, data)
        except AutovibeError as exc:  # progress is best effort; the job's result is what counts
            _log.warning("hub.event_lost", job=job_id, error=exc.message)

    return emit


def _cancelled_result(jobs: JobQueue, job: JobRead) -> dict[str, Any]:
    """What a cancelled job had done: its kind's own report (a fleet: each machine's outcome), else its
    progress events (``step``, ``machine``) up to the cancel."""
    report = CANCEL_REPORTS.get(job.kind)
    if report is not None:
        return report(jobs.db, job)
    events = jobs.events(job.id)
    return {"progress": [e.data for e in events if e.data.get("type") in ("step", "machine")]}


def _job_error(exc: BaseException) -> JobError:
    if isinstance(exc, AutovibeError):
        details: dict[str, Any] | None = None
        if isinstance(exc, ApprovalRequired):
            details = {"approval_id": exc.approval_id}
        operation_id = getattr(exc, "operation_id", None)
        if operation_id:
            details = {**(details or {}), "operation_id": operation_id}
        kind = "approval_required" if isinstance(exc, ApprovalRequired) else error_kind(exc)
        return JobError(kind=kind, message=exc.message, hint=exc.hint, details=details)
    return JobError(
        kind="internal",
        message=f"internal error ({type(exc).__name__})",
        hint="the hub's log has the traceback; please report it",
    )
