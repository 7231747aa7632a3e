"""The remote halves of the usage, quota, limits, network and metrics commands (see ``cli.remote``).

Each function asks the hub's REST API and rebuilds the values the local code produces (``UsageRow``,
``ProjectStatus``, ``TickReport``, ``LimitsRead``, ``NetworkProfile``, ``ApplyReport``, ``CheckReport``,
``RefreshReport``, the metrics text), so every command keeps a single rendering path. Errors come back
as the autovibe error kinds the local code raises (same exit codes); where the local command names the
flag the user typed (``--since``, ``--max-cpu``), the hub's field names are turned into those flags.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from autovibe.cli.remote import connect, segment
from autovibe.errors import AutovibeInvalid

if TYPE_CHECKING:
    from collections.abc import Mapping

    from autovibe.network.profiles import NetworkProfile
    from autovibe.network.service import ApplyReport, CheckReport, RefreshReport
    from autovibe.settings import Settings
    from autovibe.usage.limits import LimitsRead
    from autovibe.usage.quotas import ProjectStatus
    from autovibe.usage.service import TickReport, UsageRow

COMMANDS: frozenset[str] = frozenset(
    {
        "usage",
        "quota set", "quota show", "quota unset", "quota enforce",
        "limits set", "limits show",
        "network profiles", "network apply", "network check", "network refresh",
        "metrics",
    }
)  # fmt: skip
"""Command paths (``"quota show"``) that work with ``--hub``."""

PROCESS_FAMILIES = ("process_", "python_info", "python_gc_")
"""Metric families of the answering process (``autovibe metrics --process``): the hub always has them."""


# ---- usage -----------------------------------------------------------------------------------------
def usage_report(
    settings: Settings, *, project: str | None, since: str | None, by: str
) -> tuple[datetime, datetime, list[UsageRow]]:
    """``GET /usage``: the window (start, end: the hub's target clock) and its rows. An unreadable or
    future ``since`` is the local command's ``--since:`` one-liner (exit 2)."""
    from autovibe.cli.commands.project import refuse
    from autovibe.usage.service import UsageRow

    with connect(settings) as hub:
        try:
            body = hub.get("/usage", project=project, since=since, by=by)
        except AutovibeInvalid as exc:
            raise refuse(exc, {"since": "--since"}) from None
    rows = [UsageRow.model_validate(row) for row in body["rows"]]
    return datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"]), rows


# ---- quotas ----------------------------------------------------------------------------------------
def project_status(data: dict[str, Any]) -> ProjectStatus:
    """A project's standing as the hub answers it (``percent`` is derived again from usage and limit;
    the store's ``project_id`` is not part of the answer and never shown: it is 0)."""
    from autovibe.usage.quotas import ProjectStatus, QuotaStatus

    quotas = tuple(
        QuotaStatus.model_validate({k: v for k, v in q.items() if k in QuotaStatus.model_fields})
        for q in data.get("quotas") or ()
    )
    return ProjectStatus(project=str(data["project"]), project_id=0, level=data["level"], quotas=quotas)


def set_quota(
    settings: Settings, project: str, figures: dict[str, float], period: str, approval: str | None
) -> ProjectStatus:
    body: dict[str, Any] = {**figures, "period": period}
    if approval is not None:
        body["approval"] = approval
    with connect(settings) as hub:
        return project_status(hub.put(f"/projects/{segment(project)}/quota", body))


def quota_status(settings: Settings, project: str | None) -> tuple[datetime, list[ProjectStatus]]:
    """Every readable project's standing (or ``project``'s) and when it was computed (target clock)."""
    with connect(settings) as hub:
        items = [hub.get(f"/projects/{segment(project)}/quota")] if project else list(hub.get("/quotas"))
        if items:
            at = datetime.fromisoformat(str(items[0]["at"]))
        else:  # no project to read: the end of a usage window is the hub's "now" as well
            at = datetime.fromisoformat(str(hub.get("/usage", period="day")["until"]))
    return at, [project_status(item) for item in items]


def unset_quota(settings: Settings, project: str, metric: str | None) -> int:
    with connect(settings) as hub:
        return int(hub.delete(f"/projects/{segment(project)}/quota", metric=metric)["removed"])


def usage_pass(settings: Settings, *, dry_run: bool) -> TickReport:
    """``quota enforce``: one usage pass as a hub job (``POST /usage/pass``); its report."""
    from autovibe.usage.service import TickReport

    with connect(settings) as hub:
        job = hub.submit_and_follow("POST", "/usage/pass", json_body={"dry_run": dry_run})
    return TickReport.model_validate(job["result"])


# ---- limits ----------------------------------------------------------------------------------------
def show_limits(settings: Settings, ref: str) -> LimitsRead:
    from autovibe.usage.limits import LimitsRead

    with connect(settings) as hub:
        return LimitsRead.model_validate(hub.get(f"/machines/{segment(ref)}/limits"))


def set_limits(settings: Settings, ref: str, values: dict[str, float | int | None]) -> LimitsRead:
    """Set (``None``: clear) limits. Values are checked as the service checks them first, so a bad one
    is the same one line; what the hub refuses as invalid is a ``LimitsInvalid`` as well."""
    from autovibe.usage.limits import LimitsInvalid, LimitsRead
    from autovibe.usage.limits import _check as check_values

    check_values(values)
    with connect(settings) as hub:
        try:
            return LimitsRead.model_validate(hub.put(f"/machines/{segment(ref)}/limits", values))
        except AutovibeInvalid as exc:
            raise LimitsInvalid(exc.message, hint=exc.hint) from None


# ---- network ---------------------------------------------------------------------------------------
def network_profiles(settings: Settings) -> Mapping[str, NetworkProfile]:
    from autovibe.network.profiles import NetworkProfile

    with connect(settings) as hub:
        found = [NetworkProfile.model_validate(item) for item in hub.get("/network/profiles")]
    return {profile.name: profile for profile in found}


def apply_profile(settings: Settings, machine: str, profile: str, approval: str | None) -> ApplyReport:
    """``network apply`` as a hub job (``POST /network/apply`` for one machine)."""
    from autovibe.network.service import ApplyReport

    body: dict[str, Any] = {"machine": machine, "profile": profile}
    if approval is not None:
        body["approval"] = approval
    with connect(settings) as hub:
        job = hub.submit_and_follow("POST", "/network/apply", json_body=body)
    [done] = job["result"]["applied"]
    return ApplyReport(
        machine=str(done["machine"]),
        vmid=int(done["vmid"]),
        profile=str(done["profile"]),
        changes=tuple(done.get("changes") or ()),
        warnings=tuple(done.get("warnings") or ()),
    )


def check_report(data: dict[str, Any]) -> CheckReport:
    from autovibe.network.firewall import Difference
    from autovibe.network.service import CheckReport

    return CheckReport(
        machine=str(data["machine"]),
        vmid=int(data["vmid"]),
        profile=data.get("profile"),
        differences=tuple(
            Difference(str(d["kind"]), str(d["detail"])) for d in data.get("differences") or ()
        ),
        warnings=tuple(data.get("warnings") or ()),
    )


def check_network(
    settings: Settings, machine: str | None, project: str | None, *, fix: bool
) -> tuple[list[CheckReport], set[str]]:
    """``network check``: ``GET /network/check``, or with ``fix`` the ``POST /network/fix`` job (each
    machine's check after the fix, and which were re-applied)."""
    with connect(settings) as hub:
        if not fix:
            items = hub.get("/network/check", machine=machine, project=project)
            return [check_report(item) for item in items], set()
        body = {key: value for key, value in (("machine", machine), ("project", project)) if value}
        job = hub.submit_and_follow("POST", "/network/fix", json_body=body)
    items = job["result"]["machines"]
    return [check_report(item) for item in items], {str(item["machine"]) for item in items if item["fixed"]}


def refresh_network(settings: Settings) -> RefreshReport:
    from autovibe.network.service import RefreshReport

    with connect(settings) as hub:
        job = hub.submit_and_follow("POST", "/network/refresh")
    result = job.get("result") or {}
    return RefreshReport(tuple(result.get("changes") or ()), tuple(result.get("failures") or ()))


# ---- metrics ---------------------------------------------------------------------------------------
def metrics_text(settings: Settings, *, include_process: bool) -> str:
    """The hub's ``/metrics`` exposition (it needs a global role). Without ``include_process`` the hub
    process's own families (``process_*``, ``python_*``) are left out, as locally."""
    with connect(settings) as hub:
        text = hub.request("GET", f"{hub.url}/metrics").text
    return text if include_process else without_process_families(text)


def without_process_families(text: str) -> str:
    """The exposition without the :data:`PROCESS_FAMILIES` (their ``# HELP``/``# TYPE`` lines and
    samples)."""

    def family(line: str) -> str:
        if line.startswith("# "):
            parts = line.split(" ", 3)
            return parts[2] if len(parts) > 2 else ""
        return line

    kept = [line for line in text.splitlines(keepends=True) if not family(line).startswith(PROCESS_FAMILIES)]
    return "".join(kept)
