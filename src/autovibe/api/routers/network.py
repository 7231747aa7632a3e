"""Network: the isolation profiles (egress allowlists through the PVE firewall), applying them to
machines and re-applying where the live state drifted (jobs), the drift report itself, and refreshing
the IP sets the profiles' host names resolve to (a job)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, Deps, HubDep, accepted, submit
from autovibe.composition import network_context
from autovibe.errors import AutovibeInvalid
from autovibe.hub.service import Hub
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import MachineNotFound, ProjectNotFound
from autovibe.network import service
from autovibe.network.profiles import NetworkProfile, get_profile
from autovibe.network.service import CheckReport
from autovibe.security import rbac
from autovibe.security.identity import Identity
from autovibe.store import repositories as repo

router = APIRouter(prefix="/network", tags=["network"])

Name = Annotated[str | None, Field(min_length=1, max_length=64)]
ProfileName = Annotated[str | None, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="A network profile")]
ApprovalId = Annotated[str | None, Field(min_length=4, max_length=36, description="An approved request's id")]


class NetworkTarget(BaseModel):
    """The machines to act on: one ``machine`` (name or vmid), a ``project``'s machines, or (neither)
    every machine you may see."""

    model_config = ConfigDict(extra="forbid")

    machine: Name = None
    project: Name = None

    @model_validator(mode="after")
    def _not_both(self) -> NetworkTarget:
        if self.machine is not None and self.project is not None:
            raise ValueError("give a machine or a project, not both")
        return self


class ApplyRequest(NetworkTarget):
    """Apply ``profile`` (default: each machine's current network profile again) to one ``machine`` or
    to every machine of a ``project`` (one of them is required)."""

    profile: ProfileName = None
    approval: ApprovalId = None

    @model_validator(mode="after")
    def _one_target(self) -> ApplyRequest:
        if self.machine is None and self.project is None:
            raise ValueError("give a machine or a project")
        return self


class DifferenceRead(BaseModel):
    kind: str = Field(examples=["missing-rule"])
    detail: str


class CheckRead(BaseModel):
    """One machine's live network and firewall state against its profile: ``differences`` is empty when
    they agree; ``warnings`` are notes (host names that did not resolve, a datacenter firewall off...)."""

    machine: str
    vmid: int
    profile: str | None
    differences: list[DifferenceRead]
    warnings: list[str]


def check_read(report: CheckReport) -> CheckRead:
    return CheckRead(
        machine=report.machine,
        vmid=report.vmid,
        profile=report.profile,
        differences=[DifferenceRead(kind=d.kind, detail=d.detail) for d in report.differences],
        warnings=list(report.warnings),
    )


def _targets(
    deps: MachineDeps, machine: str | None, project: str | None
) -> list[tuple[str, str, str | None]]:
    """(name, project, network profile) of the machines asked for that the caller may read (404 for an
    unknown machine or project, 403 for one it may not read)."""
    identity = deps.identity
    if machine is not None:
        if machine.isdigit() and len(machine) > 12:
            raise MachineNotFound(f"no machine '{machine}'")
        row = machines.find(deps, machine)
        where = machines.project_of(deps, row)
        rbac.check(identity, "machine.read", where)
        return [(row.name, where, row.network_profile)]
    with deps.db.session() as session:
        if project is not None:
            if repo.project_by_name(session, project) is None:
                raise ProjectNotFound(f"no project '{project}'", hint="list projects: GET /api/v1/projects")
            rbac.check(identity, "machine.read", project)
        return [
            (row.name, row.project.name, row.network_profile)
            for row in repo.machines(session, project=project)
            if rbac.can(identity, "machine.read", row.project.name)
        ]


def _precheck(hub: Hub, identity: Identity, action: str, targets: list[tuple[str, str, str | None]]) -> None:
    for where in sorted({project for _, project, _ in targets}):
        names = [name for name, project, _ in targets if project == where]
        hub.base_deps.security.precheck(
            identity, action, target=f"network of {len(names)} machine(s) in project {where}", project=where
        )


@router.get("/profiles", response_model=list[NetworkProfile])
def list_profiles(hub: HubDep, _identity: Caller) -> list[NetworkProfile]:
    """The network profiles: the seeds and those of the configuration (``[network.profiles]``), with
    their bridge, VLAN, policies, DNS servers and allowlist."""
    return list(network_context(hub.settings).profiles.values())


@router.post("/apply", status_code=202, responses=ACCEPTED_RESPONSE)
async def apply(hub: HubDep, identity: Caller, deps: Deps, body: ApplyRequest) -> JSONResponse:
    """Apply a network profile to a machine or to every machine of a project, as a job (idempotent:
    applying again changes nothing). The profile, the machines and your role are checked now; risk and
    approvals are weighed when it runs (an approval it needs fails the job with
    ``error.details.approval_id``). Without ``profile`` each machine's current profile is applied again."""
    if body.profile is not None:
        get_profile(network_context(hub.settings).profiles, body.profile)  # 404 now
    targets = await asyncio.to_thread(_targets, deps, body.machine, body.project)
    if body.machine is not None and body.profile is None and targets[0][2] is None:
        raise AutovibeInvalid(
            f"machine '{targets[0][0]}' has no network profile yet", hint="give the profile to apply"
        )
    params: dict[str, Any] = {
        "machines": [name for name, _, _ in targets],
        "profile": body.profile,
        "approval": body.approval,
    }
    project: str | None = body.project
    if body.machine is not None:
        target, project = f"machine {targets[0][0]}", targets[0][1]
    else:
        target = f"machines of project {body.project}"
    return submit(
        hub, identity, "network.apply", params, action="network.apply", target=target, project=project
    )


@router.get("/check", response_model=list[CheckRead])
async def check(
    hub: HubDep,
    deps: Deps,
    machine: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this machine")
    ] = None,
    project: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this project's machines")
    ] = None,
) -> list[CheckRead]:
    """Compare each machine's live network and firewall (bridge, firewall options, rules, IP sets) with
    its profile and list every difference; it only reads PVE. Without ``machine`` or ``project``, every
    machine you may see (machines gone from PVE are left out)."""
    if machine is not None and project is not None:
        raise AutovibeInvalid("give a machine or a project, not both")
    ctx = network_context(hub.settings)
    if machine is not None:
        targets = await asyncio.to_thread(_targets, deps, machine, None)
        names = [targets[0][0]]
    else:
        if project is not None:
            await asyncio.to_thread(_targets, deps, None, project)  # 404 / 403 now
        names = [m.name for m in await machines.list_machines(deps, project=project) if not m.missing]
    return [check_read(await service.check(deps, ctx, name)) for name in names]


@router.post("/fix", status_code=202, responses=ACCEPTED_RESPONSE)
async def fix(hub: HubDep, identity: Caller, deps: Deps, body: NetworkTarget) -> JSONResponse:
    """Check the machine, the project's machines, or (neither) every machine you may see, and re-apply
    the profile wherever anything differs, as a job; its result has each machine's check after the fix
    and whether it was re-applied. Needs the right to apply network profiles in each project."""
    targets = await asyncio.to_thread(_targets, deps, body.machine, body.project)
    _precheck(hub, identity, "network.apply", targets)
    params: dict[str, Any] = {"machines": [name for name, _, _ in targets]}
    projects = {project for _, project, _ in targets}
    job = hub.submit(
        "network.fix", params, identity=identity, project=projects.pop() if len(projects) == 1 else None
    )
    return accepted(job)


@router.post("/refresh", status_code=202, responses=ACCEPTED_RESPONSE)
async def refresh(hub: HubDep, identity: Caller) -> JSONResponse:
    """Re-resolve the host names of the profiles in use and update their IP sets, as a job (global admins
    only): new addresses are added before old ones are removed, and a name that does not resolve keeps its
    old addresses (reported in the result's ``failures``)."""
    return submit(
        hub, identity, "network.refresh", {}, action="network.refresh", target="network IP sets", project=None
    )
