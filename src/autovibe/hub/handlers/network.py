"""Network jobs: apply a profile to machines, re-apply where the live state drifted, refresh IP sets.

Each machine's end is an event ``{"type": "machine", "machine", ...}``. The API checked the request and
the submitter's role; the service runs the gate again (risk, approvals) when the job runs.
"""

from __future__ import annotations

from typing import Any

from autovibe.composition import network_context
from autovibe.errors import AutovibeError, error_kind
from autovibe.hub.handlers import JobContext, JobPartlyFailed, handler
from autovibe.machines import service as machines
from autovibe.network import service
from autovibe.network.service import CheckReport
from autovibe.security.gate import ApprovalRequired


def _failure(name: str, exc: AutovibeError) -> dict[str, Any]:
    failure: dict[str, Any] = {"machine": name, "error": error_kind(exc), "message": exc.message}
    if isinstance(exc, ApprovalRequired):
        failure["approval_id"] = exc.approval_id
    return failure


def _finish(
    job: JobContext, result: dict[str, Any], errors: list[tuple[str, AutovibeError]], what: str
) -> dict[str, Any]:
    """The result, or (when machines failed) the job's error: the machine's own error when it was the only
    one asked for, else :class:`JobPartlyFailed` keeping ``result`` with each ``failures`` entry."""
    if not errors:
        return result
    if len(job.params["machines"]) == 1:
        raise errors[0][1]
    name, first = errors[0]
    total = len(job.params["machines"])
    raise JobPartlyFailed(
        f"{len(errors)} of {total} machine(s) not {what}; first: {name}: {first.message}",
        result={**result, "failures": [_failure(n, e) for n, e in errors]},
        hint=first.hint,
    )


def _check_dict(report: CheckReport, *, fixed: bool) -> dict[str, Any]:
    return {
        "machine": report.machine,
        "vmid": report.vmid,
        "profile": report.profile,
        "differences": [{"kind": d.kind, "detail": d.detail} for d in report.differences],
        "warnings": list(report.warnings),
        "fixed": fixed,
    }


@handler("network.apply")
async def apply(job: JobContext) -> dict[str, Any]:
    """Apply ``profile`` (or each machine's current one) to ``machines`` in turn; a machine without a
    profile (none given, none applied before) is skipped. Result: ``{"applied": [...], "skipped": [...]}``."""
    ctx = network_context(job.settings)
    wanted = job.params.get("profile")
    applied: list[dict[str, Any]] = []
    skipped: list[str] = []
    errors: list[tuple[str, AutovibeError]] = []
    for name in job.params["machines"]:
        try:
            profile = wanted or machines.find(job.deps, name).network_profile
            if not profile:
                skipped.append(name)
                job.emit({"type": "machine", "machine": name, "skipped": "no network profile"})
                continue
            report = await service.apply(job.deps, ctx, name, str(profile), approval=job.approval)
        except AutovibeError as exc:
            errors.append((name, exc))
            job.emit({"type": "machine", **_failure(name, exc)})
            continue
        done = {
            "machine": report.machine,
            "vmid": report.vmid,
            "profile": report.profile,
            "changes": list(report.changes),
            "warnings": list(report.warnings),
        }
        job.emit({"type": "machine", **done})
        applied.append(done)
    return _finish(job, {"applied": applied, "skipped": skipped}, errors, "applied")


@handler("network.fix")
async def fix(job: JobContext) -> dict[str, Any]:
    """Check each machine and re-apply its profile where anything differs. Result: ``{"machines": [...]}``,
    each machine's check after the fix with ``fixed`` (re-applied) and ``ok`` (nothing differs now)."""
    ctx = network_context(job.settings)
    results = []
    errors: list[tuple[str, AutovibeError]] = []
    for name in job.params["machines"]:
        try:
            target = await machines.show(job.deps, name)
            if target.missing:
                continue
            report = await service.check(job.deps, ctx, name)
            fixed = bool(report.differences) and report.profile is not None
            if fixed and report.profile is not None:
                await service.apply(job.deps, ctx, name, report.profile)
                report = await service.check(job.deps, ctx, name)
        except AutovibeError as exc:
            errors.append((name, exc))
            job.emit({"type": "machine", **_failure(name, exc)})
            continue
        result = _check_dict(report, fixed=fixed)
        job.emit({"type": "machine", **result})
        results.append(result)
    outcome = {"machines": results, "ok": not any(r["differences"] for r in results)}
    return _finish(job, outcome, errors, "fixed")


@handler("network.refresh")
async def refresh(job: JobContext) -> dict[str, Any]:
    """Re-resolve the host names of the profiles in use and update their IP sets."""
    report = await service.refresh(job.deps, network_context(job.settings))
    return {"changes": list(report.changes), "failures": list(report.failures)}
