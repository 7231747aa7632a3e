"""``autovibe quota ...``: per-project quotas on usage, where projects stand, and enforcement on demand.

Enforcement is graduated (``autovibe.usage.quotas``): up to the quota ``ok``; under 10% over ``warn``;
10% up to 50% over ``throttle`` (new machines are refused); 50% or more over ``emergency`` (the project's
non-critical machines are stopped, lowest priority first). :func:`show_pass` renders one usage pass and
is shared with ``autovibe hub tick``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag

if TYPE_CHECKING:
    from autovibe.settings import Settings
    from autovibe.usage.quotas import ProjectStatus
    from autovibe.usage.service import TickReport

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

ProjectArg = Annotated[str, typer.Argument(help="The project.")]
# The flag each quota metric is set with, in the order they are shown.
METRIC_FLAGS = {
    "cpu_core_hours": "--cpu-hours",
    "mem_gib_hours": "--mem-gib-hours",
    "net_gb": "--net-gb",
    "storage_gib": "--storage-gib",
}
UNITS = {"cpu_core_hours": "core-h", "mem_gib_hours": "GiB-h", "net_gb": "GB", "storage_gib": "GiB"}
LEVEL_STYLES = {"ok": "green", "warn": "yellow", "throttle": "bold yellow", "emergency": "bold red"}
LEVEL_MEANING = {
    "ok": "within its quotas",
    "warn": "over a quota by less than 10%",
    "throttle": "10% or more over a quota: new machines are refused",
    "emergency": "50% or more over a quota: its non-critical machines are stopped",
}


@app.callback()
def quota(ctx: typer.Context) -> None:
    """Project quotas on CPU, memory, network and storage, with graduated enforcement."""
    show_help_without_subcommand(ctx)


def metric_name(text: str) -> str:
    """``cpu-hours``, ``--cpu-hours`` or ``cpu_core_hours`` -> ``cpu_core_hours``; BadInput otherwise."""
    wanted = text.strip().lower()
    for metric, flag in METRIC_FLAGS.items():
        if wanted in (metric, flag, flag.removeprefix("--")):
            return metric
    names = ", ".join(flag.removeprefix("--") for flag in METRIC_FLAGS.values())
    raise BadInput(f"--metric: unknown quota '{text}': use one of {names}")


@app.command("set")
def set_(
    ctx: typer.Context,
    project: ProjectArg,
    cpu_hours: Annotated[
        float | None, typer.Option("--cpu-hours", help="CPU core-hours per period (cpu x cores x hours).")
    ] = None,
    mem_gib_hours: Annotated[
        float | None, typer.Option("--mem-gib-hours", help="Memory in use, GiB-hours per period.")
    ] = None,
    net_gb: Annotated[
        float | None, typer.Option("--net-gb", help="Network traffic in + out, GB (10^9 B) per period.")
    ] = None,
    storage_gib: Annotated[
        float | None,
        typer.Option("--storage-gib", help="Storage now occupied: disks, snapshots, RAM states (GiB)."),
    ] = None,
    period: Annotated[
        str, typer.Option(help="Calendar period in UTC the usage figures add up over: month, week, day.")
    ] = "month",
    approval: Annotated[
        str | None, typer.Option(help="Run an action the gate held, once another identity approved it.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Set one or more quotas of PROJECT (others it has stay as they are).

    The project's level is computed at once: raising a quota lifts a throttle immediately.
    """
    from autovibe.composition import describe_target, gate, identity, store, target_time
    from autovibe.usage import quotas

    given = {"cpu_core_hours": cpu_hours, "mem_gib_hours": mem_gib_hours, "net_gb": net_gb,
             "storage_gib": storage_gib}  # fmt: skip
    figures = {metric: value for metric, value in given.items() if value is not None}
    if not figures:
        raise BadInput(f"give at least one figure: {', '.join(METRIC_FLAGS.values())}")
    for metric, value in figures.items():
        if not value > 0:  # also refuses nan
            raise BadInput(f"{METRIC_FLAGS[metric]}: must be more than 0 (got {value:g})")
    if period not in quotas.PERIODS:
        raise BadInput(f"--period: '{period}' is not one of {', '.join(quotas.PERIODS)}")
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_usage

        status = remote_usage.set_quota(settings, project, figures, period, approval)
    else:
        now = run(target_time(settings))
        with store(settings) as db:
            who, guard = identity(settings, db), gate(settings, db)
            for metric, value in figures.items():
                quotas.set_quota(
                    db, project, metric, value, period, identity=who, security=guard, approval=approval
                )
            [status] = quotas.status(db, now=now, project=project)
    if json_output:
        render.emit_json({**json_envelope(settings), "project": status_dict(status)})
        return
    for metric, value in figures.items():
        render.line(f"project '{project}': {quotas.METRICS[metric]} quota {value:g} per {period}")
    show_level(status)


@app.command()
def show(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Argument(metavar="[PROJECT]", help="Only this project.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Each quota's usage, limit, percentage and level, and each project's level (its worst quota's)."""
    from autovibe.composition import describe_target, store, target_time
    from autovibe.usage import quotas

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_usage

        now, found = remote_usage.quota_status(settings, project)
        if not json_output:
            render.header(describe_target(settings))
    else:
        now = run(target_time(settings))
        if not json_output:
            render.header(describe_target(settings))
        from autovibe.composition import identity

        with store(settings) as db:
            found = quotas.status(db, now=now, project=project, identity=identity(settings, db))
    if json_output:
        render.emit_json({**json_envelope(settings), "at": now, "projects": [status_dict(s) for s in found]})
        return
    with_quotas = [s for s in found if s.quotas]
    if with_quotas:
        render.table(quota_table(with_quotas))
        for status in with_quotas:
            show_level(status)
    without = [s.project for s in found if not s.quotas]
    if without:
        render.line(
            f"no quotas: {', '.join(without)} (set one with `autovibe quota set {without[0]} --cpu-hours N`)"
        )


def status_dict(status: ProjectStatus) -> dict[str, object]:
    """A project's standing as JSON: its level and each quota with its percentage."""
    return {
        "project": status.project,
        "level": status.level,
        "quotas": [{**q.model_dump(mode="json"), "percent": round(q.percent, 2)} for q in status.quotas],
    }


def quota_table(found: Sequence[ProjectStatus], *, title: str = "Quotas") -> render.Table:
    """One row per quota, coloured by its level (also used by the demo)."""
    from autovibe.usage.quotas import METRICS

    rows = [(status.project, q) for status in found for q in status.quotas]
    return render.Table(
        title=title,
        columns=(
            render.Column("project"),
            render.Column("quota"),
            render.Column("usage", "right"),
            render.Column("limit", "right"),
            render.Column("used", "right"),
            render.Column("period"),
            render.Column("level"),
        ),
        rows=tuple(
            (
                project,
                METRICS[q.metric],
                f"{q.usage:.2f} {UNITS[q.metric]}",
                f"{q.limit:g} {UNITS[q.metric]}",
                f"{q.percent:.0f}%",
                q.period if q.metric != "storage_gib" else "now",
                q.level,
            )
            for project, q in rows
        ),
        styles=tuple(LEVEL_STYLES[q.level] for _, q in rows),
    )


def show_level(status: ProjectStatus) -> None:
    if not status.quotas:
        render.line(f"project '{status.project}' has no quotas")
        return
    render.line(
        f"project '{status.project}': {status.level} ({LEVEL_MEANING[status.level]})",
        style=LEVEL_STYLES[status.level],
    )


@app.command()
def unset(
    ctx: typer.Context,
    project: ProjectArg,
    metric: Annotated[
        str | None,
        typer.Option(help="Only this quota: cpu-hours, mem-gib-hours, net-gb or storage-gib [default: all]."),
    ] = None,
) -> None:
    """Remove PROJECT's quotas (or one of them)."""
    from autovibe.composition import describe_target, store
    from autovibe.usage import quotas

    chosen = metric_name(metric) if metric is not None else None
    settings = load_cli_settings(ctx)
    render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_usage

        removed = remote_usage.unset_quota(settings, project, chosen)
    else:
        with store(settings) as db:
            removed = quotas.unset_quota(db, project, chosen)
    what = f"{quotas.METRICS[chosen]} quota" if chosen else "quotas"
    render.line(
        f"removed {removed} quota(s) of project '{project}'"
        if removed
        else f"project '{project}' had no {what}"
    )


@app.command()
def enforce(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Sample and decide, change nothing (no samples kept, no stops).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """One usage pass now, as `hub tick` runs it: sample every machine, check limits, stop idle machines,
    then enforce quotas (level changes are alerted; at emergency the non-critical machines are stopped).
    """
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:  # a hub job: POST /usage/pass (global admins)
        from autovibe.cli import remote_usage

        report = remote_usage.usage_pass(settings, dry_run=dry_run)
    else:
        report = run(usage_pass(settings, dry_run=dry_run))
    if json_output:
        render.emit_json({**json_envelope(settings), "usage": report.model_dump(mode="json")})
        return
    show_pass(report)


async def usage_pass(settings: Settings, *, dry_run: bool, as_hub: bool = False) -> TickReport:
    """The hub's usage pass on the target's clock, alerting through the configured notifiers. Actions
    it takes are the hub's own (``as_hub``: a system identity) or the local admin's."""
    from autovibe.composition import LOCAL_ACTOR, open_machines, profiles
    from autovibe.usage import service
    from autovibe.usage.alerts import build_notifiers

    dispatcher = build_notifiers(settings.usage.webhook_url, settings.usage.webhook_secret)
    async with open_machines(settings, metered=True) as deps:
        if as_hub:
            from autovibe.security.gate import HUB

            deps.identity = HUB
        return await service.tick(
            deps, settings.usage, profiles(settings), dispatcher, actor=LOCAL_ACTOR, dry_run=dry_run
        )


def show_pass(report: TickReport) -> None:
    """One usage pass in lines: what was sampled, limits broken, idle stops and enforcement actions."""
    would = "would stop" if report.dry_run else "stopped"
    measured = "; storage measured" if report.storage_measured else ""
    render.line(
        f"usage: sampled {report.sampled} machine(s) at {report.at:%Y-%m-%d %H:%M:%S} UTC{measured}"
        + (" (dry run: nothing recorded or changed)" if report.dry_run else "")
    )
    for v in report.violations:
        render.line(
            f"limit: machine '{v['machine']}' is over its {v['kind']} limit ({v['value']:.0f}, limit "
            f"{v['limit']:g})",
            style="yellow",
        )
    for name in report.idle_stopped:
        render.line(f"idle: {would} machine '{name}'")
    for action in report.enforcement:
        render.line(
            f"quota: {action.previous} → {action.level}: {action.message}", style=LEVEL_STYLES[action.level]
        )
        if action.stop:
            operation = f"; operation {action.operation_id[:8]}" if action.operation_id else ""
            render.line(f"  {would} (lowest priority first): {', '.join(action.stop)}{operation}")
        if action.spared:
            render.line(f"  spared (critical): {', '.join(action.spared)}")
    if not report.enforcement:
        render.line("quota: no project changed level")
