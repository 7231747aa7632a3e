"""Usage jobs: quota enforcement of one project on demand (``quota.enforce``: it may stop machines)."""

from __future__ import annotations

import dataclasses
from typing import Any

from autovibe.hub.handlers import JobContext, handler
from autovibe.usage.alerts import build_notifiers
from autovibe.usage.enforce import enforce_project
from autovibe.usage.quotas import QuotaStatus


def quota_dict(quota: QuotaStatus) -> dict[str, Any]:
    """A quota as JSON, with the percentage of its limit used."""
    return {**quota.model_dump(mode="json"), "percent": round(quota.percent, 2)}


@handler("quota.enforce")
async def enforce_quota(job: JobContext) -> dict[str, Any]:
    """Enforce one project's quotas on the target's clock; the result is its ``EnforceReport``, and a
    stop of machines an event ``{"type": "stop", "machines": [...]}``."""
    deps = dataclasses.replace(job.deps, now=job.target_now)
    settings = job.settings.usage
    report = await enforce_project(
        deps,
        str(job.params["project"]),
        dispatcher=build_notifiers(settings.webhook_url, settings.webhook_secret),
        actor=job.actor,
    )
    if report.action is not None and report.action.stop:
        job.emit({"type": "stop", "machines": list(report.action.stop)})
    return report.model_dump(mode="json")
