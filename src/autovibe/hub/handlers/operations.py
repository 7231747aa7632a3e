"""Operations jobs: resume the operations a dead process left unfinished (``autovibe ops resume``)."""

from __future__ import annotations

import asyncio
from typing import Any

# Importing the services registers their operation kinds with the runner.
import autovibe.checkpoints.prune
import autovibe.checkpoints.service
import autovibe.machines.deploy
import autovibe.machines.service
import autovibe.usage.enforce
import autovibe.usage.limits  # noqa: F401
from autovibe.errors import AutovibeDenied, AutovibeError
from autovibe.hub.handlers import JobContext, handler
from autovibe.operations.journal import Journal
from autovibe.operations.runner import Runner


@handler("ops.resume")
async def resume(job: JobContext) -> dict[str, Any]:
    """Each orphaned (or stuck) operation is resumed under the gate (``ops.resume``, audited) and
    reported as an event ``{"type": "operation", "id", "kind", "was", "status", "error"}``. An operation
    that cannot be resumed (an unknown kind, PVE away) stays as it was and is counted as stuck; a
    submitter whose role no longer allows ``ops.resume`` fails the job."""
    deps = job.deps
    journal = Journal(deps.db)
    runner = Runner(journal, deps)
    rows: list[dict[str, Any]] = []
    for record in await asyncio.to_thread(journal.orphans):
        error: str | None = None
        try:
            with deps.security.guard_sync(
                deps.identity, "ops.resume", target=f"operation {record.id} ({record.kind})"
            ):
                after = await runner.resume(record)
            status, error = str(after.status), after.error
            finished = after.status.finished
        except AutovibeDenied:
            raise  # the submitter may no longer resume: the job fails with the refusal
        except AutovibeError as exc:  # an unknown kind, PVE away: leave it, report it
            status, error, finished = str(record.status), f"not resumed: {exc.message}", False
        row = {
            "id": record.id,
            "kind": record.kind,
            "was": str(record.status),
            "status": status,
            "finished": finished,
            "error": error,
        }
        job.emit({"type": "operation", **row})
        rows.append(row)
    return {"resumed": rows, "stuck": sum(1 for row in rows if not row["finished"])}
