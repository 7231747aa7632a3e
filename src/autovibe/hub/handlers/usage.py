"""Usage jobs: quota enforcement of one project on demand (``quota.enforce``: it may stop machines).

:func:`enforce_project` is one project's part of the usage pass's enforcement
(:func:`autovibe.usage.enforce.enforce` does every project), shared by the API's dry run and the job.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from autovibe.hub.handlers import JobContext, handler
from autovibe.machines.deploy import MachineDeps
from autovibe.settings import Settings
from autovibe.usage import enforce
from autovibe.usage.alerts import build_notifiers
from autovibe.usage.enforce import EnforcementAction
from autovibe.usage.quotas import Level, QuotaStatus, status


class EnforceReport(BaseModel):
    """One project's enforcement: its level before (as last recorded) and now, and the ``action`` taken
    (in a dry run: that would be taken), or ``null`` when its level did not change and nothing is to be
    stopped."""

    project: str
    dry_run: bool
    at: datetime
    previous: Level
    level: Level
    action: EnforcementAction | None = None


def quota_dict(quota: QuotaStatus) -> dict[str, Any]:
    """A quota as JSON, with the percentage of its limit used."""
    return {**quota.model_dump(mode="json"), "percent": round(quota.percent, 2)}


async def enforce_project(
    deps: MachineDeps, settings: Settings, project: str, *, now: datetime, dry_run: bool
) -> EnforceReport:
    """Compare the project's level now with the recorded one and act as the usage pass would (record and
    alert a change; at ``emergency`` stop its running non-critical machines, lowest priority first);
    ``dry_run`` decides the same and changes nothing. The caller has checked the role."""
    [current] = status(deps.db, now=now, project=project)
    previous = enforce._recorded_level(deps, current.project_id)
    action: EnforcementAction | None = None
    if current.quotas:
        doomed: list[str] = []
        spared: list[str] = []
        if current.level == "emergency":
            resources = await deps.pve.cluster_resources(type="vm")
            running = {int(r.vmid) for r in resources if r.vmid is not None and r.status == "running"}
            doomed, spared = enforce._targets(deps, current.project_id, running)
        if current.level != previous or doomed:
            action = EnforcementAction(
                project=current.project, previous=previous, level=current.level,
                message=enforce._describe(current, previous), stop=tuple(doomed), spared=tuple(spared),
            )  # fmt: skip
            if not dry_run:
                dispatcher = build_notifiers(settings.usage.webhook_url, settings.usage.webhook_secret)
                action = await enforce._act(
                    deps, current, action, dispatcher=dispatcher, actor=deps.identity.name, now=now
                )
    return EnforceReport(
        project=current.project,
        dry_run=dry_run,
        at=now,
        previous=previous,
        level=current.level,
        action=action,
    )


async def target_now(deps: MachineDeps) -> datetime:
    """ "Now" on the target's clock: an online node's time (the simulator's own for the embedded one),
    else the hub's clock."""
    for node in await deps.pve.nodes():
        if node.status == "online":
            found = await deps.pve.get(f"/nodes/{node.node}/time")
            return datetime.fromtimestamp(int(found["time"]), UTC)
    return datetime.now(UTC)


@handler("quota.enforce")
async def enforce_quota(job: JobContext) -> dict[str, Any]:
    """Enforce one project's quotas; the result is its :class:`EnforceReport`, and a stop of machines an
    event ``{"type": "stop", "machines": [...]}``."""
    now = await target_now(job.deps)
    deps = dataclasses.replace(job.deps, now=lambda: now)
    report = await enforce_project(deps, job.settings, str(job.params["project"]), now=now, dry_run=False)
    if report.action is not None and report.action.stop:
        job.emit({"type": "stop", "machines": list(report.action.stop)})
    return report.model_dump(mode="json")
