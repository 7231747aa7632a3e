"""Machine jobs: deploy (one or a fleet), power actions, resize, delete."""

from __future__ import annotations

import dataclasses
from typing import Any

from autovibe.hub.handlers import JobContext, JobPartlyFailed, cancel_report, handler, step_progress
from autovibe.hub.jobs import JobRead
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.models import MachineCreate
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
    ``deployed``, ``undone``, ``stuck`` or ``skipped`` (see :func:`fleet.outcomes_after_cancel`)."""
    names = MachineCreate.model_validate(job.params["request"]).names
    since = job.started_at or job.created_at
    outcomes = fleet.outcomes_after_cancel(db, names, since=since, why="cancelled")
    return {"ok": False, "outcomes": [dataclasses.asdict(o) for o in outcomes]}
