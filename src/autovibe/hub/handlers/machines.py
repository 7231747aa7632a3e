"""Machine jobs: deploy (one or a fleet), power actions, resize, delete."""

from __future__ import annotations

import dataclasses
from typing import Any

from autovibe.hub.handlers import JobContext, JobPartlyFailed, cancel_report, handler, step_progress
from autovibe.hub.jobs import JobRead
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import KIND
from autovibe.machines.fleet import DeployOutcome
from autovibe.machines.models import MachineCreate
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord, OpStatus
from autovibe.store.db import Database


@handler("machine.create")
async def create(job: JobContext) -> dict[str, Any]:
    """A fleet deploy; every step of every machine is an event ``{"type": "step", "machine": ...}``,
    and each machine's end an event ``{"type": "machine", "name", "status", ...}``."""
    request = MachineCreate.model_validate(job.params["request"])

    def progress(name: str, step: str, index: int, total: int) -> None:
        job.emit({"type": "step", "machine": name, "step": step, "index": index, "total": total})

    result = await fleet.deploy(
        job.deps, request, job.profiles, actor=job.actor, progress=progress, approval=job.approval
    )
    outcomes = [dataclasses.asdict(outcome) for outcome in result.outcomes]
    for outcome in outcomes:
        job.emit({"type": "machine", **outcome})
    summary = {"ok": result.ok, "outcomes": outcomes}
    failed = [o for o in outcomes if o["status"] != "deployed"]
    if failed:
        raise JobPartlyFailed(
            f"{len(failed)} of {len(outcomes)} machine(s) not deployed; first: {failed[0]['name']}: "
            f"{failed[0]['error'] or failed[0]['status']}",
            result=summary,
            hint="every failed machine was undone; see result.outcomes, then retry those names",
        )
    return summary


@handler("machine.power")
async def power(job: JobContext) -> dict[str, Any]:
    action = job.params["action"]
    machine = await machines.power(job.deps, job.params["machine"], action, approval=job.approval)
    return {"machine": machine.model_dump(mode="json")}


@handler("machine.resize")
async def resize(job: JobContext) -> dict[str, Any]:
    p = job.params
    machine = await machines.resize(
        job.deps,
        p["machine"],
        cores=p.get("cores"),
        memory_mib=p.get("memory_mib"),
        disk_gib=p.get("disk_gib"),
        approval=job.approval,
    )
    return {"machine": machine.model_dump(mode="json")}


@handler("machine.delete")
async def delete(job: JobContext) -> dict[str, Any]:
    record = await machines.delete(
        job.deps,
        job.params["machine"],
        actor=job.actor,
        reason=str(job.params.get("reason") or "requested"),
        approval=job.approval,
    )
    step_progress(job, job.params["machine"])("done", len(record.steps), len(record.steps))
    return {"operation_id": record.id, "status": str(record.status), "name": record.params["name"]}


@cancel_report("machine.create")
def cancelled_fleet(db: Database, job: JobRead) -> dict[str, Any]:
    """A cancelled fleet deploy: the same ``{"ok", "outcomes"}`` as when it ends, each machine
    ``deployed`` (it finished before the cancel), ``undone`` (in flight: its operation was compensated),
    ``stuck`` (its undo failed: ``ops resume``) or ``skipped`` (never started)."""
    names = MachineCreate.model_validate(job.params["request"]).names
    since = job.started_at or job.created_at
    newest: dict[str, OperationRecord] = {}
    for seen in Journal(db).recent(limit=200 + 4 * len(names)):
        name = str(seen.params.get("name"))
        if seen.kind == KIND and name in names and seen.created_at >= since:
            newest.setdefault(name, seen)  # newest first: the first seen is this job's operation
    outcomes = []
    for name in names:
        record = newest.get(name)
        if record is None:
            outcome = DeployOutcome(name, "skipped", "", error="not started: the job was cancelled")
        elif record.status is OpStatus.COMPLETED:
            node, vmid = str(record.state.get("node", "")), record.state.get("vmid")
            outcome = DeployOutcome(name, "deployed", node, vmid, record.id)
        elif record.status is OpStatus.COMPENSATED:
            node = str(record.params.get("node", ""))
            error = "cancelled; everything it did was undone"
            outcome = DeployOutcome(name, "undone", node, operation_id=record.id, error=error)
        else:
            node = str(record.params.get("node", ""))
            error = f"cancelled; its undo is {record.status}: run `autovibe ops resume`"
            outcome = DeployOutcome(name, "stuck", node, operation_id=record.id, error=error)
        outcomes.append(dataclasses.asdict(outcome))
    return {"ok": False, "outcomes": outcomes}
