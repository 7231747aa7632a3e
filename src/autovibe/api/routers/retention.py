"""Retention: named policies (restic's keep rules), which project or machine each applies to, scheduled
checkpoints, and the prune that deletes what a policy does not keep.

Policies and schedules are store records (plain reads and writes). A prune's dry run answers with the
plan at once; a real prune is a job (``retention.apply``). A machine's policy is its own when it has
one, else its project's; pinned checkpoints and branch points are always kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from sqlalchemy import select

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, Deps, HubDep, submit
from autovibe.api.routers.checkpoints import MACHINE_REF
from autovibe.checkpoints import policies, prune, schedules
from autovibe.checkpoints.policies import PolicyRead
from autovibe.checkpoints.retention import RetentionPolicy, parse_duration
from autovibe.checkpoints.schedules import ScheduleRead
from autovibe.hub.handlers.checkpoints import prune_result
from autovibe.hub.service import Hub
from autovibe.machines.errors import MachineNotFound, ProjectNotFound
from autovibe.machines.models import SLUG_RE, Ttl
from autovibe.security import rbac
from autovibe.security.identity import Identity
from autovibe.store import repositories as repo
from autovibe.store.tables import Machine, Project

router = APIRouter(prefix="/retention", tags=["retention"])

SLUG = f"^{SLUG_RE.pattern}$"
PolicyName = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG, description="The policy")]
ProjectName = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG, description="The project")]
MachineRef = Annotated[
    str, Path(min_length=1, max_length=63, pattern=MACHINE_REF, description="The machine's name or vmid")
]
KeepCount = Annotated[int, Field(ge=0, le=100_000)]
Within = Annotated[str | None, Field(max_length=64, examples=["3d12h"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyRules(_Body):
    """restic's ``forget --keep-*`` rules: counts (0: not used) and durations such as ``1y5m7d2h``
    (``m`` is months); at least one must be set (an empty policy would keep everything)."""

    last: KeepCount = 0
    hourly: KeepCount = 0
    daily: KeepCount = 0
    weekly: KeepCount = 0
    monthly: KeepCount = 0
    yearly: KeepCount = 0
    within: Within = None
    within_hourly: Within = None
    within_daily: Within = None
    within_weekly: Within = None
    within_monthly: Within = None
    within_yearly: Within = None
    protect_branch_points: StrictBool = True

    @field_validator(
        "within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly"
    )
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # ValueError: a 400 naming the field
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.policy().is_empty():
            raise ValueError("give at least one keep rule (an empty policy would keep everything)")
        return self

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.model_validate(self.model_dump())


class PolicyRequest(_Body):
    rules: PolicyRules
    description: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")


class AttachRequest(_Body):
    policy: str = Field(min_length=1, max_length=63, pattern=SLUG)


class Attachment(BaseModel):
    """Which policy a project (its default) or a machine (its own) has now; ``None``: none of its own."""

    scope: Literal["project", "machine"]
    target: str
    policy: str | None


class ScheduleRequest(_Body):
    """A checkpoint every ``every`` (at least 5 minutes, e.g. ``6h``, ``1d``), with RAM for running
    machines when ``ram``, then the retention policy applied when ``prune``."""

    every: Ttl
    ram: StrictBool = True
    prune: StrictBool = True


class ScheduleRemoved(BaseModel):
    scope: Literal["project", "machine"]
    target: str
    removed: bool  # False: there was no schedule


class PruneRequest(_Body):
    """Prune one machine, one project's machines, or (neither given) every machine. Without ``rules``
    each machine's attached policy decides (machines without one are left alone). ``lock_wait_s``: how
    long to keep retrying checkpoints whose VM is locked (a backup); those still locked are deferred."""

    project: str | None = Field(default=None, min_length=1, max_length=63, pattern=SLUG)
    machine: str | None = Field(default=None, min_length=1, max_length=63, pattern=MACHINE_REF)
    dry_run: StrictBool = False
    lock_wait_s: float = Field(default=60.0, ge=0, le=3600)
    rules: PolicyRules | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if self.project is not None and self.machine is not None:
            raise ValueError("give a machine or a project, not both")
        return self


class PruneCounts(BaseModel):
    keep: int
    remove: int
    removed: int
    kept: int
    deferred: int
    failed: int


class PruneReport(BaseModel):
    """What a prune would do (dry run: ``keep``/``remove``) or did (a job's result: ``kept``, ``removed``,
    ``deferred``, ``failed``), machine by machine."""

    dry_run: bool
    operation_id: str | None
    machines: list[prune.MachinePlan]
    counts: PruneCounts


# ---- who may see what ----------------------------------------------------------------------------
def _machine_projects(hub: Hub) -> dict[str, str]:
    with hub.db.session() as session:
        rows = session.execute(
            select(Machine.name, Project.name).join(Project, Machine.project_id == Project.id)
        )
        return {machine: project for machine, project in rows}


def _visible_policies(hub: Hub, identity: Identity, found: Iterable[PolicyRead]) -> list[PolicyRead]:
    """Everything for a global reader; for others, the policies attached in projects they may read,
    showing only those projects and machines."""
    found = list(found)
    if rbac.can(identity, "policy.read", None):
        return found
    where = _machine_projects(hub)
    shown = []
    for read in found:
        projects = tuple(p for p in read.projects if rbac.can(identity, "policy.read", p))
        owned = tuple(m for m in read.machines if rbac.can(identity, "policy.read", where.get(m, "")))
        if projects or owned:
            shown.append(read.model_copy(update={"projects": projects, "machines": owned}))
    return shown


def _policy(hub: Hub, identity: Identity, name: str) -> PolicyRead:
    found = policies.get(hub.db, name)
    visible = _visible_policies(hub, identity, [found])
    if not visible:
        rbac.check(identity, "policy.read", None)  # raises: say what role would show it
    return visible[0]


def _machine_name(hub: Hub, ref: str) -> tuple[str, str]:
    """The machine's name and project (404 when there is none)."""
    with hub.db.session() as session:
        row = repo.machine_by_ref(session, ref)
        if row is None:
            raise MachineNotFound(f"no machine '{ref}'", hint="list machines with GET /api/v1/machines")
        return row.name, row.project.name


def _project(hub: Hub, name: str) -> str:
    with hub.db.session() as session:
        if repo.project_by_name(session, name) is None:
            raise ProjectNotFound(f"no project '{name}'", hint="list projects with GET /api/v1/projects")
    return name


# ---- policies ------------------------------------------------------------------------------------
@router.get("/policies", response_model=list[PolicyRead])
def list_policies(hub: HubDep, identity: Caller) -> list[PolicyRead]:
    """Every retention policy you may read, by name, with its rules in words and where it is attached."""
    return _visible_policies(hub, identity, policies.list_all(hub.db))


@router.get("/policies/{name}", response_model=PolicyRead)
def show_policy(hub: HubDep, identity: Caller, name: PolicyName) -> PolicyRead:
    """One retention policy: its rules, a sentence saying what it keeps, and where it is attached."""
    return _policy(hub, identity, name)


@router.put("/policies/{name}", response_model=PolicyRead)
def put_policy(hub: HubDep, identity: Caller, name: PolicyName, body: PolicyRequest) -> PolicyRead:
    """Create the policy, or replace its rules (machines using it follow at their next prune). Policies
    are shared by every project they are attached to, so this needs a global admin."""
    return policies.save(
        hub.db,
        name,
        body.rules.policy(),
        description=body.description,
        identity=identity,
        security=hub.base_deps.security,
    )


@router.delete("/policies/{name}", response_model=PolicyRead)
def delete_policy(hub: HubDep, identity: Caller, name: PolicyName) -> PolicyRead:
    """Delete a policy that nothing uses and answer with what it was (one still attached is a 409)."""
    read = policies.get(hub.db, name)
    policies.delete(hub.db, name, identity=identity, security=hub.base_deps.security)
    return read


# ---- attachments ---------------------------------------------------------------------------------
@router.put("/projects/{project}/policy", response_model=PolicyRead)
def attach_to_project(hub: HubDep, identity: Caller, project: ProjectName, body: AttachRequest) -> PolicyRead:
    """Make the policy the project's default: its machines without a policy of their own follow it."""
    _project(hub, project)
    policies.get(hub.db, body.policy)  # 404 before the gate records anything
    policies.attach(hub.db, body.policy, project=project, identity=identity, security=hub.base_deps.security)
    return _policy(hub, identity, body.policy)


@router.delete("/projects/{project}/policy", response_model=Attachment)
def detach_from_project(hub: HubDep, identity: Caller, project: ProjectName) -> Attachment:
    """Remove the project's default policy (machines with a policy of their own keep theirs)."""
    _project(hub, project)
    policies.detach(hub.db, project=project, identity=identity, security=hub.base_deps.security)
    return Attachment(scope="project", target=project, policy=None)


@router.put("/machines/{ref}/policy", response_model=PolicyRead)
def attach_to_machine(hub: HubDep, identity: Caller, ref: MachineRef, body: AttachRequest) -> PolicyRead:
    """Give the machine a policy of its own (it wins over its project's default)."""
    name, _project_name = _machine_name(hub, ref)
    policies.get(hub.db, body.policy)
    policies.attach(hub.db, body.policy, machine=name, identity=identity, security=hub.base_deps.security)
    return _policy(hub, identity, body.policy)


@router.delete("/machines/{ref}/policy", response_model=Attachment)
def detach_from_machine(hub: HubDep, identity: Caller, ref: MachineRef) -> Attachment:
    """Remove the machine's own policy: its project's default applies again."""
    name, _project_name = _machine_name(hub, ref)
    policies.detach(hub.db, machine=name, identity=identity, security=hub.base_deps.security)
    return Attachment(scope="machine", target=name, policy=None)


# ---- schedules -----------------------------------------------------------------------------------
@router.get("/schedules", response_model=list[ScheduleRead])
def list_schedules(hub: HubDep, identity: Caller) -> list[ScheduleRead]:
    """Every checkpoint schedule you may read, with its last and next run (``next_due_at`` null: due
    at the scheduler's next pass)."""
    where = _machine_projects(hub)
    return [
        found
        for found in schedules.list_schedules(hub.db)
        if rbac.can(
            identity, "checkpoint.read", found.target if found.scope == "project" else where.get(found.target)
        )
    ]


@router.put("/projects/{project}/schedule", response_model=ScheduleRead)
def put_project_schedule(
    hub: HubDep, identity: Caller, project: ProjectName, body: ScheduleRequest
) -> ScheduleRead:
    """Take a checkpoint of each machine of the project every ``every`` (machines with a schedule of
    their own follow that one); creates or replaces the project's schedule."""
    _project(hub, project)
    return schedules.set_schedule(
        hub.db, every=body.every, project=project, ram=body.ram, prune=body.prune, identity=identity,
        security=hub.base_deps.security,
    )  # fmt: skip


@router.delete("/projects/{project}/schedule", response_model=ScheduleRemoved)
def delete_project_schedule(hub: HubDep, identity: Caller, project: ProjectName) -> ScheduleRemoved:
    """Stop the project's scheduled checkpoints (the checkpoints taken stay)."""
    _project(hub, project)
    removed = schedules.remove_schedule(
        hub.db, project=project, identity=identity, security=hub.base_deps.security
    )
    return ScheduleRemoved(scope="project", target=project, removed=removed)


@router.put("/machines/{ref}/schedule", response_model=ScheduleRead)
def put_machine_schedule(
    hub: HubDep, identity: Caller, ref: MachineRef, body: ScheduleRequest
) -> ScheduleRead:
    """Take a checkpoint of the machine every ``every``; creates or replaces its schedule."""
    name, _project_name = _machine_name(hub, ref)
    return schedules.set_schedule(
        hub.db, every=body.every, machine=name, ram=body.ram, prune=body.prune, identity=identity,
        security=hub.base_deps.security,
    )  # fmt: skip


@router.delete("/machines/{ref}/schedule", response_model=ScheduleRemoved)
def delete_machine_schedule(hub: HubDep, identity: Caller, ref: MachineRef) -> ScheduleRemoved:
    """Stop the machine's scheduled checkpoints (the checkpoints taken stay)."""
    name, _project_name = _machine_name(hub, ref)
    removed = schedules.remove_schedule(
        hub.db, machine=name, identity=identity, security=hub.base_deps.security
    )
    return ScheduleRemoved(scope="machine", target=name, removed=removed)


# ---- prune ---------------------------------------------------------------------------------------
@router.post("/prune", response_model=PruneReport, responses=ACCEPTED_RESPONSE)
async def prune_checkpoints(
    hub: HubDep, identity: Caller, deps: Deps, body: PruneRequest
) -> PruneReport | JSONResponse:
    """Apply retention policies. ``dry_run`` answers 200 with the plan (what each policy keeps, and
    why); otherwise the deletions run as a job (202) whose result is the same report with each item's
    outcome. A prune across projects (no ``project`` or ``machine`` given) needs a global role."""
    scope = body.project
    if body.machine is not None:
        _name, scope = await asyncio.to_thread(_machine_name, hub, body.machine)
    elif body.project is not None:
        await asyncio.to_thread(_project, hub, body.project)
    override = body.rules.policy() if body.rules is not None else None
    if body.dry_run:
        if scope is not None:
            rbac.check(identity, "checkpoint.read", scope)
        plans = await prune.plan_prune(deps, project=body.project, machine=body.machine, override=override)
        if scope is None:
            plans = _readable_plans(hub, identity, plans)
        return PruneReport.model_validate(prune_result(prune.PruneResult(tuple(plans), None), dry_run=True))
    params: dict[str, Any] = {
        "project": body.project,
        "machine": body.machine,
        "rules": override.model_dump(mode="json") if override is not None else None,
        "lock_wait_s": body.lock_wait_s,
    }
    what = f"machine {body.machine}" if body.machine else f"project {body.project}" if body.project else "all"
    return submit(
        hub, identity, "retention.apply", params, action="retention.apply", target=f"prune of {what}",
        project=scope,
    )  # fmt: skip


def _readable_plans(hub: Hub, identity: Identity, plans: list[prune.MachinePlan]) -> list[prune.MachinePlan]:
    if rbac.can(identity, "checkpoint.read", None):
        return plans
    with hub.db.session() as session:
        where = {
            machine_id: project
            for machine_id, project in session.execute(
                select(Machine.id, Project.name).join(Project, Machine.project_id == Project.id)
            )
        }
    return [p for p in plans if rbac.can(identity, "checkpoint.read", where.get(p.machine_id))]
