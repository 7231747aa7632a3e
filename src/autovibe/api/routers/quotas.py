"""Quotas: per-project caps on usage, where projects stand against them, and enforcement on demand.

Enforcement is graduated: up to the quota ``ok``; under 10% over ``warn``; 10% up to 50% over
``throttle`` (new machines are refused); 50% or more over ``emergency`` (the project's non-critical
machines are stopped, lowest priority first). Setting and removing quotas is for admins; enforcing on
demand for global admins.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, HubDep, submit
from autovibe.hub.handlers.usage import quota_dict
from autovibe.hub.service import Hub
from autovibe.security.identity import Identity
from autovibe.usage import quotas
from autovibe.usage.alerts import build_notifiers
from autovibe.usage.enforce import EnforceReport, enforce_project
from autovibe.usage.quotas import Level, ProjectStatus

router = APIRouter(tags=["quotas"])

ProjectPath = Annotated[str, Path(min_length=1, max_length=64, description="The project's name")]
Figure = Annotated[float | None, Field(gt=0, le=1e12, allow_inf_nan=False)]
Metric = Literal["cpu_core_hours", "mem_gib_hours", "net_gb", "storage_gib"]
ApprovalId = Annotated[str | None, Field(min_length=4, max_length=36, description="An approved request's id")]


class QuotaRead(BaseModel):
    """One quota: the figure it caps, its limit, the calendar period (UTC) it adds up over and when that
    began, the usage so far, the percentage of the limit used and the level."""

    metric: Metric
    limit: float
    period: Literal["day", "week", "month"]
    since: datetime
    usage: float
    percent: float
    level: Level


class ProjectQuotaRead(BaseModel):
    """A project's standing at ``at`` (the target's clock): its level (its worst quota's) and each quota."""

    project: str
    level: Level
    quotas: list[QuotaRead]
    at: datetime = Field(description="When the standing was computed, on the target's clock (UTC)")


class QuotaSet(BaseModel):
    """One or more quota figures per ``period`` (others the project has stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    cpu_core_hours: Figure = Field(default=None, description="CPU core-hours per period")
    mem_gib_hours: Figure = Field(default=None, description="Memory in use, GiB-hours per period")
    net_gb: Figure = Field(default=None, description="Network traffic in + out, GB (10^9 B) per period")
    storage_gib: Figure = Field(default=None, description="Storage now occupied (GiB)")
    period: Literal["day", "week", "month"] = "month"
    approval: ApprovalId = None

    @model_validator(mode="after")
    def _one_figure(self) -> QuotaSet:
        if not self.figures():
            raise ValueError("give at least one of cpu_core_hours, mem_gib_hours, net_gb, storage_gib")
        return self

    def figures(self) -> dict[str, float]:
        given = {
            "cpu_core_hours": self.cpu_core_hours,
            "mem_gib_hours": self.mem_gib_hours,
            "net_gb": self.net_gb,
            "storage_gib": self.storage_gib,
        }
        return {metric: value for metric, value in given.items() if value is not None}


class QuotaRemoved(BaseModel):
    project: str
    removed: int


class EnforceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = False


def _read(found: ProjectStatus, at: datetime) -> ProjectQuotaRead:
    return ProjectQuotaRead.model_validate(
        {
            "project": found.project,
            "level": found.level,
            "quotas": [quota_dict(q) for q in found.quotas],
            "at": at,
        }
    )


def _status(hub: Hub, identity: Identity, project: str | None) -> list[ProjectQuotaRead]:
    now = hub.metered_deps(identity).now()
    return [_read(found, now) for found in quotas.status(hub.db, now=now, project=project, identity=identity)]


@router.get("/quotas", response_model=list[ProjectQuotaRead])
def list_quotas(hub: HubDep, identity: Caller) -> list[ProjectQuotaRead]:
    """Every project you may read quotas of, with its level and each quota's usage and percentage
    (projects without quotas are listed with an empty ``quotas`` and level ``ok``)."""
    return _status(hub, identity, None)


@router.get("/projects/{project}/quota", response_model=ProjectQuotaRead)
def show_quota(hub: HubDep, identity: Caller, project: ProjectPath) -> ProjectQuotaRead:
    """The project's level and each quota's usage over its period so far (the target's clock), limit and
    percentage. A project you may not read is a 403."""
    [found] = _status(hub, identity, project)
    return found


@router.put("/projects/{project}/quota", response_model=ProjectQuotaRead)
def set_quota(hub: HubDep, identity: Caller, project: ProjectPath, body: QuotaSet) -> ProjectQuotaRead:
    """Set one or more quotas of the project (admins only; quotas not given stay as they are) and answer
    with its standing, computed at once: raising a quota lifts a throttle immediately."""
    for metric, value in body.figures().items():
        quotas.set_quota(
            hub.db, project, metric, value, body.period, identity=identity,
            security=hub.base_deps.security, approval=body.approval,
        )  # fmt: skip
    [found] = _status(hub, identity, project)
    return found


@router.delete("/projects/{project}/quota", response_model=QuotaRemoved)
def unset_quota(
    hub: HubDep,
    identity: Caller,
    project: ProjectPath,
    metric: Annotated[Metric | None, Query(description="Only this quota (default: all of them)")] = None,
) -> QuotaRemoved:
    """Remove the project's quotas, or only ``metric`` (admins only); answers how many were removed."""
    removed = quotas.unset_quota(hub.db, project, metric, identity=identity, security=hub.base_deps.security)
    return QuotaRemoved(project=project, removed=removed)


@router.post(
    "/projects/{project}/quota/enforce",
    response_model=EnforceReport,
    responses=ACCEPTED_RESPONSE,
)
async def enforce(
    hub: HubDep, identity: Caller, project: ProjectPath, body: EnforceRequest
) -> EnforceReport | JSONResponse:
    """Enforce the project's quotas now on the usage recorded so far (global admins only). With
    ``dry_run`` the answer (200) says what would happen (the level change and the machines that would be
    stopped) and nothing changes; otherwise the enforcement runs as a job (202): a level change is
    recorded and alerted, and at ``emergency`` the project's non-critical machines are stopped."""
    await asyncio.to_thread(_check_project, hub, identity, project)
    params: dict[str, Any] = {"project": project}
    if body.dry_run:
        hub.base_deps.security.precheck(
            identity, "quota.enforce", target=f"quotas of project {project}", project=project, params=params
        )
        usage = hub.settings.usage
        dispatcher = build_notifiers(usage.webhook_url, usage.webhook_secret)
        return await enforce_project(
            hub.metered_deps(identity), project, dispatcher=dispatcher, actor=identity.name, dry_run=True
        )
    return submit(
        hub, identity, "quota.enforce", params, action="quota.enforce",
        target=f"quotas of project {project}", project=project,
    )  # fmt: skip


def _check_project(hub: Hub, identity: Identity, project: str) -> None:
    quotas.status(hub.db, now=hub.now(), project=project, identity=identity)  # 404 / 403 now
