"""Usage jobs: quota enforcement of one project on demand (``quota.enforce``: it may stop machines), and
one whole usage pass on demand (``usage.pass``: sample, limits, idle stops, every project's quotas)."""

from __future__ import annotations

import dataclasses
from typing import Any

from autovibe.hub.handlers import JobContext, handler
from autovibe.usage import service
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


@handler("usage.pass")
async def usage_pass(job: JobContext) -> dict[str, Any]:
    """One usage pass on the target's clock, as the submitter (``autovibe quota enforce``); the result is
    its ``TickReport``, and idle stops and quota stops are events ``{"type": "stop", "machines": [...]}``."""
    deps = dataclasses.replace(job.deps, now=job.target_now)
    settings = job.settings.usage
    report = await service.tick(
        deps,
        settings,
        job.profiles,
        build_notifiers(settings.webhook_url, settings.webhook_secret),
        actor=job.actor,
        dry_run=bool(job.params.get("dry_run")),
    )
    stopped = [*report.idle_stopped, *(name for action in report.enforcement for name in action.stop)]
    if stopped and not report.dry_run:
        job.emit({"type": "stop", "machines": stopped})
    return report.model_dump(mode="json")
