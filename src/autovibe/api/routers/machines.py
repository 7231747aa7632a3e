"""Machines: list and show (reads), deploy one or a fleet, power actions, resize, delete (jobs, 202),
and lease extension."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, Deps, HubDep, MachineRef, submit
from autovibe.machines import service
from autovibe.machines.errors import MachineNameTaken, ProjectNotFound
from autovibe.machines.models import Cores, DiskGiB, MachineCreate, MachineRead, MemoryMiB, Ttl, resolved_spec
from autovibe.machines.profiles import get_profile
from autovibe.store import repositories as repo

router = APIRouter(prefix="/machines", tags=["machines"])

ApprovalId = Annotated[str | None, Field(min_length=4, max_length=36, description="An approved request's id")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineCreateRequest(MachineCreate):
    """A machine, or a fleet of ``count`` machines named ``name-1``..``name-N``, from a profile."""

    # JSON booleans only: the CLI's "yes"/"1" forgiveness has no place in an API body.
    start: StrictBool = True
    full_clone: StrictBool | None = None

    approval: ApprovalId = None


class PowerRequest(_Body):
    action: Literal["start", "stop", "shutdown", "reboot"]
    approval: ApprovalId = None


class ResizeRequest(_Body):
    cores: Cores | None = None
    memory_mib: MemoryMiB | None = None
    disk_gib: DiskGiB | None = None
    approval: ApprovalId = None


class ExtendRequest(_Body):
    ttl: Ttl


class Lease(BaseModel):
    name: str
    expires_at: datetime


@router.get("", response_model=list[MachineRead])
async def list_machines(
    deps: Deps, project: Annotated[str | None, Query(max_length=64)] = None
) -> list[MachineRead]:
    """The machines you may see, with PVE's live status (one cluster read for the whole list)."""
    return await service.list_machines(deps, project=project)


@router.get("/{ref}", response_model=MachineRead)
async def show_machine(deps: Deps, ref: MachineRef) -> MachineRead:
    """One machine by name or vmid."""
    return await service.show(deps, ref)


@router.post("", status_code=202, responses=ACCEPTED_RESPONSE)
async def create_machines(hub: HubDep, identity: Caller, body: MachineCreateRequest) -> JSONResponse:
    """Deploy the machine(s) as a job. The request is checked now (profile, project, free names, quota,
    your role), so a bad one is a 4xx instead of a failed job; risk and approvals are weighed when it
    runs, and an approval it needs fails the job with ``error.details.approval_id``."""
    request = MachineCreate.model_validate(body.model_dump(exclude={"approval"}))
    spec = resolved_spec(request, get_profile(hub.profiles, request.profile))
    await asyncio.to_thread(_check_names, hub, spec.project, list(spec.names))
    deps = hub.deps_for(identity)
    await deps.hooks.check_quota({"project": spec.project})
    names = list(spec.names)
    target = f"{len(names)} machine(s) {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
    params: dict[str, Any] = {"request": request.model_dump(mode="json"), "approval": body.approval}
    return submit(
        hub, identity, "machine.create", params, action="machine.create", target=target, project=spec.project
    )


def _check_names(hub: Any, project: str, names: list[str]) -> None:
    with hub.db.session() as session:
        if repo.project_by_name(session, project) is None:
            raise ProjectNotFound(
                f"no project '{project}'", hint=f"create it: autovibe project create {project}"
            )
        taken = [name for name in names if repo.machine_by_name(session, name) is not None]
    if taken:
        raise MachineNameTaken(
            f"machine name(s) already in use: {', '.join(taken)}", hint="choose another name"
        )


def _target(deps: Any, ref: str) -> tuple[str, str]:
    row = service.find(deps, ref)
    return row.name, service.project_of(deps, row)


@router.post("/{ref}/power", status_code=202, responses=ACCEPTED_RESPONSE)
async def power(
    hub: HubDep, identity: Caller, deps: Deps, ref: MachineRef, body: PowerRequest
) -> JSONResponse:
    """Start, stop (hard), shut down (ACPI) or reboot, as a job."""
    name, project = _target(deps, ref)
    params = {"machine": name, "action": body.action, "approval": body.approval}
    return submit(
        hub, identity, "machine.power", params, action=f"machine.{body.action}", target=f"machine {name}",
        project=project,
    )  # fmt: skip


@router.post("/{ref}/resize", status_code=202, responses=ACCEPTED_RESPONSE)
async def resize(
    hub: HubDep, identity: Caller, deps: Deps, ref: MachineRef, body: ResizeRequest
) -> JSONResponse:
    """Change cores and memory (applied at the next boot) and grow the boot disk, as a job."""
    name, project = _target(deps, ref)
    params = {"machine": name, **body.model_dump()}
    return submit(
        hub,
        identity,
        "machine.resize",
        params,
        action="machine.resize",
        target=f"machine {name}",
        project=project,
    )


@router.delete("/{ref}", status_code=202, responses=ACCEPTED_RESPONSE)
async def delete_machine(
    hub: HubDep,
    identity: Caller,
    deps: Deps,
    ref: MachineRef,
    approval: Annotated[str | None, Query(min_length=4, max_length=36)] = None,
    reason: Annotated[str, Query(max_length=200)] = "requested",
) -> JSONResponse:
    """Stop and purge the VM, then forget the machine, as a job (resumable: it is finished, not undone)."""
    name, project = _target(deps, ref)
    params = {"machine": name, "approval": approval, "reason": reason}
    return submit(
        hub,
        identity,
        "machine.delete",
        params,
        action="machine.delete",
        target=f"machine {name}",
        project=project,
    )


@router.post("/{ref}/extend", response_model=Lease)
def extend(deps: Deps, ref: MachineRef, body: ExtendRequest) -> Lease:
    """Push the machine's lease ``ttl`` further (from now if it had none or it has passed)."""
    expires = service.extend_lease(deps, ref, body.ttl)
    return Lease(name=service.find(deps, ref).name, expires_at=expires)
