"""``autovibe usage``: what projects (or their machines) consumed over a window, from the hourly usage.

Figures come from the hub's usage pass (``autovibe hub tick`` or ``autovibe quota enforce``), which
samples every machine and integrates the samples; this command only reads what was recorded. Time is the
target's: the embedded simulator's own clock, or the wall clock for a real PVE.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run
from autovibe.cli.commands.project import BadInput, JsonFlag

if TYPE_CHECKING:
    from autovibe.usage.service import UsageRow

app = typer.Typer(rich_markup_mode=None, add_completion=False)

SPARK_HOURS = 24
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?([+-]\d{2}:?\d{2}|Z)?")


@app.command()
def usage(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Start of the window: a duration back from now (30d, 12h, 2w) or a UTC date or time "
            "(2026-11-01, 2026-11-01T08:00) [default: the start of this month]."
        ),
    ] = None,
    by: Annotated[str, typer.Option(help="One row per 'project' or per 'machine'.")] = "project",
    json_output: JsonFlag = False,
) -> None:
    """CPU core-hours, memory GiB-hours, network in/out, storage, hours covered by samples (and gaps),
    and the CPU of the last 24 hours as a sparkline, per project or per machine.

    Usage is recorded by the hub's usage pass (`autovibe hub tick`); gaps between samples longer than
    usage.max_gap_s are counted as gap hours, not guessed.
    """
    from autovibe.composition import describe_target, store, target_time
    from autovibe.usage import service

    if by not in ("project", "machine"):
        raise BadInput(f"--by: '{by}' is not 'project' or 'machine'")
    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_usage

        start, now, rows = remote_usage.usage_report(settings, project=project, since=since, by=by)
        if not json_output:
            render.header(describe_target(settings))
    else:
        now = run(target_time(settings))
        start = parse_since(since, now)
        if not json_output:
            render.header(describe_target(settings))
        from autovibe.composition import identity

        with store(settings) as db:
            rows = service.report(
                db, since=start, until=now, project=project, by=cast(Literal["project", "machine"], by),
                identity=identity(settings, db),
            )  # fmt: skip
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "since": start,
                "until": now,
                "by": by,
                "rows": [row.model_dump(mode="json") for row in rows],
            }
        )
        return
    render.table(usage_table(rows, since=start, until=now, by=by))
    if not any(row.covered_h or row.gap_h for row in rows):
        render.line("no usage recorded in this window yet: `autovibe hub tick` samples the machines")


def parse_since(text: str | None, now: datetime) -> datetime:
    """``None`` -> the start of ``now``'s month; ``30d``/``12h``/``2w`` -> that long before ``now``;
    ``2026-11-01`` or ``2026-11-01T08:00`` -> that UTC instant. Raises :class:`BadInput` (exit 2)."""
    from autovibe.machines.models import parse_ttl

    if text is None:
        return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadInput(f"--since: {exc}") from None
        start = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        try:
            start = now - parse_ttl(value)
        except ValueError:
            raise BadInput(
                f"--since: {text!r} is neither a duration (30d, 12h) nor a date (2026-11-01)"
            ) from None
    if start > now:
        raise BadInput(f"--since: {start:%Y-%m-%d %H:%M} UTC is in the future")
    return start


def usage_table(rows: list[UsageRow], *, since: datetime, until: datetime, by: str) -> render.Table:
    """Usage rows as a table (also used by the demo)."""
    return render.Table(
        title=f"Usage {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC, per {by}",
        columns=(
            render.Column("project/machine" if by == "machine" else "project"),
            render.Column("CPU core-h", "right"),
            render.Column("mem GiB-h", "right"),
            render.Column("net in GB", "right"),
            render.Column("net out GB", "right"),
            render.Column("storage GiB", "right"),
            render.Column("hours", "right"),
            render.Column("gap h", "right"),
            render.Column(f"CPU, last {SPARK_HOURS} h"),
        ),
        rows=tuple(
            (
                f"{row.project}/{row.machine}" if row.machine else row.project,
                f"{row.cpu_core_hours:.2f}",
                f"{row.mem_gib_hours:.2f}",
                f"{row.net_in_gb:.2f}",
                f"{row.net_out_gb:.2f}",
                f"{row.storage_gib:.1f}",
                f"{row.covered_h:.1f}",
                f"{row.gap_h:.1f}",
                render.sparkline(row.cpu_by_hour, width=SPARK_HOURS),
            )
            for row in rows
        ),
    )
