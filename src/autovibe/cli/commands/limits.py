"""``autovibe limits ...``: per-machine limits (max CPU, memory, uptime) and idle auto-stop.

The hub's usage pass (``autovibe hub tick``) checks them: going over a max opens a violation (alerted)
that closes when the machine is back under it; a machine idle for the whole idle window is stopped
(after a checkpoint when its profile asks for one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag, refuse

if TYPE_CHECKING:
    from datetime import timedelta

    from autovibe.usage.limits import LimitsRead

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

RefArg = Annotated[str, typer.Argument(metavar="MACHINE", help="The machine's name or vmid.")]
# Limit fields as the flags that set them, so errors name what was typed.
FLAGS = {
    "max_cpu_pct": "--max-cpu",
    "max_mem_pct": "--max-mem",
    "max_uptime_s": "--max-uptime",
    "idle_cpu_pct": "--idle-cpu",
    "idle_for_s": "--idle-for",
}
# What --clear accepts: a flag's name, or `idle` (both halves of the idle rule), or `all`.
CLEARABLE = {
    **{flag.removeprefix("--"): (field,) for field, flag in FLAGS.items()},
    "idle": ("idle_cpu_pct", "idle_for_s"),
    "all": tuple(FLAGS),
}


@app.callback()
def limits(ctx: typer.Context) -> None:
    """Per-machine limits: max CPU %, max memory %, max uptime, and idle auto-stop."""
    show_help_without_subcommand(ctx)


def _duration(flag: str, text: str | None) -> int | None:
    from autovibe.machines.models import parse_ttl

    if text is None:
        return None
    try:
        ttl: timedelta = parse_ttl(text)
    except ValueError as exc:
        raise BadInput(f"{flag}: {exc}") from None
    return int(ttl.total_seconds())


@app.command("set")
def set_(
    ctx: typer.Context,
    ref: RefArg,
    max_cpu: Annotated[
        float | None, typer.Option("--max-cpu", metavar="PCT", help="Max CPU, % of its cores.")
    ] = None,
    max_mem: Annotated[
        float | None, typer.Option("--max-mem", metavar="PCT", help="Max memory, % of its memory.")
    ] = None,
    max_uptime: Annotated[
        str | None, typer.Option("--max-uptime", help="Max time running since boot, e.g. 24h or 7d.")
    ] = None,
    idle_cpu: Annotated[
        float | None,
        typer.Option("--idle-cpu", metavar="PCT", help="Idle when CPU stays under this % (with --idle-for)."),
    ] = None,
    idle_for: Annotated[
        str | None, typer.Option("--idle-for", help="...for this long, e.g. 30m: then it is stopped.")
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            metavar="FIELD",
            help="Remove a limit (repeatable): max-cpu, max-mem, max-uptime, idle, or all.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Set (or --clear) limits of MACHINE; limits not named stay as they were."""
    from autovibe.composition import describe_target, open_machines
    from autovibe.usage import limits as service
    from autovibe.usage.limits import LimitsInvalid

    values: dict[str, float | int | None] = {
        "max_cpu_pct": max_cpu,
        "max_mem_pct": max_mem,
        "max_uptime_s": _duration("--max-uptime", max_uptime),
        "idle_cpu_pct": idle_cpu,
        "idle_for_s": _duration("--idle-for", idle_for),
    }
    values = {key: value for key, value in values.items() if value is not None}
    for name in clear or ():
        fields = CLEARABLE.get(name.strip().lower().removeprefix("--"))
        if fields is None:
            raise BadInput(f"--clear: unknown limit '{name}': use one of {', '.join(CLEARABLE)}")
        for field in fields:
            if field in values:
                raise BadInput(f"{FLAGS[field]}: set and cleared at once")
            values[field] = None
    if not values:
        raise BadInput(f"give a limit to set ({', '.join(FLAGS.values())}) or --clear")
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))

    async def apply() -> LimitsRead:
        async with open_machines(settings) as deps:
            return service.set_limits(deps, ref, **values)

    try:
        if settings.hub_url:
            from autovibe.cli import remote_usage

            read = remote_usage.set_limits(settings, ref, values)
        else:
            read = run(apply())
    except LimitsInvalid as exc:
        raise refuse(exc, FLAGS) from None
    _emit(read, json_envelope(settings) if json_output else None)


@app.command()
def show(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """MACHINE's limits and its recent violations (newest first)."""
    from autovibe.composition import describe_target, open_machines
    from autovibe.usage import limits as service

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))

    async def read() -> LimitsRead:
        async with open_machines(settings) as deps:
            return service.show(deps, ref)

    if settings.hub_url:
        from autovibe.cli import remote_usage

        _emit(remote_usage.show_limits(settings, ref), json_envelope(settings) if json_output else None)
        return
    _emit(run(read()), json_envelope(settings) if json_output else None)


def _emit(read: LimitsRead, envelope: dict[str, object] | None) -> None:
    """The limits as JSON under ``envelope``, or as lines and a violations table when it is None."""
    if envelope is not None:
        render.emit_json({**envelope, "limits": read.model_dump(mode="json")})
        return
    idle = (
        f"stop when CPU stays under {read.idle_cpu_pct:g}% for {_interval(read.idle_for_s)}"
        if read.idle_cpu_pct is not None and read.idle_for_s is not None
        else "-"
    )
    for key, value in (
        ("machine", read.machine),
        ("max CPU", f"{read.max_cpu_pct:g}%" if read.max_cpu_pct is not None else "-"),
        ("max memory", f"{read.max_mem_pct:g}%" if read.max_mem_pct is not None else "-"),
        ("max uptime", _interval(read.max_uptime_s) if read.max_uptime_s is not None else "-"),
        ("idle", idle),
    ):
        render.line(f"{key:<11} {value}")
    if not read.violations:
        render.line("no violations recorded")
        return
    render.table(
        render.Table(
            title=f"Recent violations ({len(read.violations)})",
            columns=(
                render.Column("limit"),
                render.Column("max", "right"),
                render.Column("peak", "right"),
                render.Column("from (UTC)"),
                render.Column("until (UTC)"),
            ),
            rows=tuple(
                (
                    v.kind,
                    _limit(v.kind, v.limit),
                    _limit(v.kind, v.peak),
                    v.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    v.ended_at.strftime("%Y-%m-%d %H:%M:%S") if v.ended_at else "ongoing",
                )
                for v in read.violations
            ),
            styles=tuple(None if v.ended_at else "yellow" for v in read.violations),
        )
    )


def _limit(kind: str, value: float) -> str:
    return _interval(int(value)) if kind == "uptime" else f"{value:.0f}%"


def _interval(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return render.human_duration(seconds)
