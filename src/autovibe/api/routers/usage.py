"""Usage: what projects (or their machines) consumed over a window, from the hourly usage rows the hub's
usage pass records (the same figures as ``autovibe usage --json``), and one usage pass on demand (a job,
what ``autovibe quota enforce`` runs). Time is the target's: the embedded simulator's own clock, or the
wall clock for a real PVE."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, HubDep, submit
from autovibe.errors import AutovibeInvalid
from autovibe.machines.models import parse_ttl
from autovibe.usage import service
from autovibe.usage.quotas import period_start
from autovibe.usage.service import UsageRow

router = APIRouter(prefix="/usage", tags=["usage"])

MAX_WINDOW = timedelta(days=400)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?([+-]\d{2}:?\d{2}|Z)?")


class UsageReport(BaseModel):
    """Usage between ``since`` and ``until`` (UTC, the target's clock), one row per project or machine."""

    since: datetime
    until: datetime
    by: Literal["project", "machine"]
    rows: list[UsageRow]


class UsageInvalid(AutovibeInvalid):
    """A window the report cannot take (an unreadable or future ``since``, or both ``since`` and
    ``period``)."""


def window_start(since: str | None, period: str | None, now: datetime) -> datetime:
    """The start of the window: ``period`` (the current calendar day/week/month), ``since`` (a duration
    back from ``now`` such as ``30d``, or a UTC date/time), or by default the start of this month."""
    if since is not None and period is not None:
        raise UsageInvalid("give since or period, not both")
    if since is None:
        return period_start(now, period or "month")
    value = since.strip()
    if _DATE.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            start = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise UsageInvalid(f"since: {exc}") from None
    else:
        try:
            start = now - parse_ttl(value)
        except (ValueError, OverflowError):
            raise UsageInvalid(
                f"since: {since!r} is neither a duration (30d, 12h) nor a date (2026-11-01)"
            ) from None
    if start > now:
        raise UsageInvalid(f"since: {start:%Y-%m-%d %H:%M} UTC is in the future")
    if now - start > MAX_WINDOW:
        raise UsageInvalid(
            f"since: the window may span at most {MAX_WINDOW.days} days", hint="ask for a shorter window"
        )
    return start


@router.get("", response_model=UsageReport)
def usage_report(
    hub: HubDep,
    identity: Caller,
    project: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this project")
    ] = None,
    by: Annotated[Literal["project", "machine"], Query(description="One row per project or machine")] = (
        "project"
    ),
    since: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            description="Start of the window: a duration back from now (30d, 12h, 2w) or a UTC date or "
            "time (2026-11-01, 2026-11-01T08:00). Default: the start of this month.",
        ),
    ] = None,
    period: Annotated[
        Literal["day", "week", "month"] | None,
        Query(description="The current calendar period (UTC) instead of since"),
    ] = None,
) -> UsageReport:
    """CPU core-hours, memory GiB-hours, network in/out (GB), storage (GiB), hours covered by samples and
    gap hours, and CPU per hour (for a sparkline), per project or per machine, over a window ending now on
    the target's clock. Only the projects you may read usage of are shown; asking for a project you may
    not read is a 403. Figures come from the hub's usage pass: with no pass yet, the rows are zeros."""
    deps = hub.metered_deps(identity)
    now = deps.now()
    start = window_start(since, period, now)
    rows = service.report(deps.db, since=start, until=now, project=project, by=by, identity=identity)
    return UsageReport(since=start, until=now, by=by, rows=rows)


class UsagePassRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = False


@router.post("/pass", status_code=202, responses=ACCEPTED_RESPONSE)
async def usage_pass(hub: HubDep, identity: Caller, body: UsagePassRequest) -> JSONResponse:
    """One usage pass now, as the hub's scheduler runs it (global admins only), as a job: sample every
    machine, check limits (violations are recorded and alerted), stop idle machines, then enforce every
    project's quotas (level changes are alerted; at ``emergency`` non-critical machines are stopped). With
    ``dry_run`` the samples are still recorded, and nothing else is: no violations, alerts or stops. The
    job's result is the pass's report: ``at``, ``sampled``, ``violations``, ``idle_stopped`` and each
    project's ``enforcement`` action."""
    return submit(
        hub, identity, "usage.pass", {"dry_run": body.dry_run}, action="quota.enforce",
        target="usage pass of every project", project=None,
    )  # fmt: skip
