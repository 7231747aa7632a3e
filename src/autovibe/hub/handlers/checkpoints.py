"""Checkpoint jobs (create, restore, branch, delete) and the retention prune (``retention.apply``).

Each runs the same service call as the CLI, as the job's submitter; the service re-checks what can
change while the job waited (the machine, the checkpoint, pins) and runs the security gate itself.
"""

from __future__ import annotations

from typing import Any

from autovibe.checkpoints import prune, service
from autovibe.checkpoints.retention import RetentionPolicy
from autovibe.hub.handlers import JobContext, handler, step_progress
from autovibe.machines import service as machines


@handler("checkpoint.create")
async def create(job: JobContext) -> dict[str, Any]:
    p = job.params
    made = await service.create(
        job.deps,
        p["machine"],
        p.get("name"),
        ram=p.get("ram"),
        description=str(p.get("description") or ""),
        pin=bool(p.get("pin")),
        actor=job.actor,
        approval=job.approval,
    )
    return {
        "machine": p["machine"],
        "checkpoint": made.checkpoint.model_dump(mode="json"),
        "operation_id": made.operation_id,
        "ram_skipped": made.ram_skipped,
    }


@handler("checkpoint.restore")
async def restore(job: JobContext) -> dict[str, Any]:
    p = job.params
    restored = await service.restore(
        job.deps,
        p["machine"],
        p["checkpoint"],
        start=bool(p.get("start")),
        discard_newer=bool(p.get("discard_newer")),
        actor=job.actor,
        approval=job.approval,
    )
    return {
        "machine": restored.machine,
        "restored": restored.checkpoint,
        "status": restored.status,
        "discarded": list(restored.discarded),
        "operation_id": restored.operation_id,
    }


@handler("checkpoint.branch")
async def branch(job: JobContext) -> dict[str, Any]:
    """Every step of the clone saga is an event ``{"type": "step", "machine": new_name, ...}``."""
    p = job.params
    new_name = str(p["new_name"])
    # A branch into another project: the service checks the submitter may create machines there.
    record = await service.branch(
        job.deps,
        p["machine"],
        p["checkpoint"],
        new_name=new_name,
        project=p.get("project"),
        node=p.get("node"),
        start=bool(p.get("start", True)),
        actor=job.actor,
        progress=step_progress(job, new_name),
        approval=job.approval,
    )
    view = await machines.show(job.deps, new_name)
    return {
        "machine": view.model_dump(mode="json"),
        "source": {"machine": view.parent_machine, "checkpoint": view.parent_checkpoint},
        "operation_id": record.id,
    }


@handler("checkpoint.delete")
async def delete(job: JobContext) -> dict[str, Any]:
    p = job.params
    record = await service.delete(
        job.deps,
        p["machine"],
        p["checkpoint"],
        actor=job.actor,
        force=bool(p.get("force")),
        approval=job.approval,
    )
    return {"machine": str(record.params["machine"]), "deleted": p["checkpoint"], "operation_id": record.id}


@handler("retention.apply")
async def apply(job: JobContext) -> dict[str, Any]:
    """Plan again (checkpoints may have come and gone while the job waited), then delete what the
    policies do not keep; the result has every item's outcome (removed, kept, deferred, failed)."""
    p = job.params
    override = RetentionPolicy.model_validate(p["rules"]) if p.get("rules") else None
    plans = await prune.plan_prune(
        job.deps, project=p.get("project"), machine=p.get("machine"), override=override
    )
    result = await prune.apply(
        job.deps,
        plans,
        actor=job.actor,
        lock_wait_s=float(p.get("lock_wait_s", 60.0)),
        progress=step_progress(job),
    )
    return prune_result(result, dry_run=False)


def prune_result(result: prune.PruneResult, *, dry_run: bool) -> dict[str, Any]:
    """A prune (or its dry run) as JSON: the plans with each item's outcome, and the counts."""
    outcomes: tuple[prune.Outcome, ...] = ("keep", "remove", "removed", "kept", "deferred", "failed")
    return {
        "dry_run": dry_run,
        "operation_id": result.operation_id,
        "machines": [plan.model_dump(mode="json") for plan in result.plans],
        "counts": {outcome: result.count(outcome) for outcome in outcomes},
    }
