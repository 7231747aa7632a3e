"""``autovibe checkpoint prune|policy|schedule``: retention policies and scheduled checkpoints.

Kept apart from ``checkpoint.py`` (single-checkpoint commands); :func:`register` adds these commands
to the ``checkpoint`` group. Policies use restic's flag words (``--keep-last 3 --keep-daily 7
--keep-within 3d12h``) and restic's semantics. With ``--hub`` they ask the hub's ``/retention`` routes
instead (a real prune is a hub job), with the same output and exit codes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import remote_checkpoints as hub_calls
from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import JsonFlag

if TYPE_CHECKING:
    from autovibe.checkpoints.policies import PolicyRead
    from autovibe.checkpoints.prune import PruneResult
    from autovibe.checkpoints.retention import RetentionPolicy
    from autovibe.settings import Settings

policy_app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)
schedule_app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

_D = "restic duration such as 3d12h (y, m = months, d, h)"
KeepLast = Annotated[int, typer.Option("--keep-last", help="Keep the N newest checkpoints.")]
KeepHourly = Annotated[int, typer.Option("--keep-hourly", help="Keep the newest of each of N hours.")]
KeepDaily = Annotated[int, typer.Option("--keep-daily", help="Keep the newest of each of N days.")]
KeepWeekly = Annotated[int, typer.Option("--keep-weekly", help="Keep the newest of each of N ISO weeks.")]
KeepMonthly = Annotated[int, typer.Option("--keep-monthly", help="Keep the newest of each of N months.")]
KeepYearly = Annotated[int, typer.Option("--keep-yearly", help="Keep the newest of each of N years.")]
KeepWithin = Annotated[
    str | None, typer.Option("--keep-within", help=f"Keep all within this of the newest ({_D}).")
]
WithinHourly = Annotated[str | None, typer.Option("--keep-within-hourly", help="Hourly ones within this.")]
WithinDaily = Annotated[str | None, typer.Option("--keep-within-daily", help="Daily ones within this.")]
WithinWeekly = Annotated[str | None, typer.Option("--keep-within-weekly", help="Weekly ones within this.")]
WithinMonthly = Annotated[str | None, typer.Option("--keep-within-monthly", help="Monthly ones within this.")]
WithinYearly = Annotated[str | None, typer.Option("--keep-within-yearly", help="Yearly ones within this.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="A project (its default policy).")]
MachineOpt = Annotated[str | None, typer.Option("--machine", help="A machine (name or vmid).")]


def _rules(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, 0)}


def _policy(rules: dict[str, Any]) -> RetentionPolicy:
    from autovibe.checkpoints.errors import InvalidCheckpointRequest
    from autovibe.checkpoints.policies import build_policy
    from autovibe.cli.commands.project import refuse

    try:
        return build_policy(rules)
    except InvalidCheckpointRequest as exc:
        raise refuse(exc) from None


def register(app: typer.Typer) -> None:
    """Add ``prune`` and the ``policy`` and ``schedule`` groups to the ``checkpoint`` group."""
    app.command()(prune)
    app.add_typer(policy_app, name="policy", help="Named retention policies, attached to projects/machines.")
    app.add_typer(
        schedule_app, name="schedule", help="Take checkpoints on an interval (`hub tick` runs them)."
    )


# ---- prune ---------------------------------------------------------------------------------------
def prune(
    ctx: typer.Context,
    machine: Annotated[str | None, typer.Argument(metavar="[MACHINE]", help="Only this machine.")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's machines.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decisions; delete nothing.")] = False,
    keep_last: KeepLast = 0,
    keep_hourly: KeepHourly = 0,
    keep_daily: KeepDaily = 0,
    keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    keep_yearly: KeepYearly = 0,
    keep_within: KeepWithin = None,
    keep_within_hourly: WithinHourly = None,
    keep_within_daily: WithinDaily = None,
    keep_within_weekly: WithinWeekly = None,
    keep_within_monthly: WithinMonthly = None,
    keep_within_yearly: WithinYearly = None,
    lock_wait: Annotated[
        float, typer.Option(help="Seconds to keep retrying checkpoints whose VM is locked.")
    ] = 60.0,
    json_output: JsonFlag = False,
) -> None:
    """Delete the checkpoints a retention policy does not keep (restic's `forget` rules).

    Without --keep-* flags each machine's attached policy is used (its own, else its project's);
    machines without one are left alone. Pinned checkpoints and branch points are always kept.
    Checkpoints whose VM stays locked (a backup) past --lock-wait are reported as deferred.
    Exit code 1 if a deletion failed.
    """
    from autovibe.cli.commands.project import BadInput
    from autovibe.composition import describe_target

    if machine is not None and project is not None:
        raise BadInput("give a MACHINE or --project, not both")
    if lock_wait < 0:
        raise BadInput("--lock-wait: must be 0 or more seconds")
    rules = _rules(
        last=keep_last, hourly=keep_hourly, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly,
        yearly=keep_yearly, within=keep_within, within_hourly=keep_within_hourly,
        within_daily=keep_within_daily, within_weekly=keep_within_weekly,
        within_monthly=keep_within_monthly, within_yearly=keep_within_yearly,
    )  # fmt: skip
    override = _policy(rules) if rules else None
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    # A live bar on a terminal while deletions run (the hub's job events drive it through --hub);
    # piped output stays the report alone.
    live = not (json_output or dry_run) and render.output().is_terminal
    with render.progress("prune") if live else nullcontext(None) as bar:

        def steps(step: str, index: int, total: int) -> None:
            if bar is not None:
                bar.update(index / total if total else 1.0, step)

        if settings.hub_url:
            result = hub_calls.prune(
                settings, machine, project, override, dry_run=dry_run, lock_wait=lock_wait, steps=steps
            )
        else:
            result = run(
                _prune(
                    settings, machine, project, override, dry_run=dry_run, lock_wait=lock_wait, steps=steps
                )
            )
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "dry_run": dry_run,
                "operation_id": result.operation_id,
                "machines": [p.model_dump(mode="json") for p in result.plans],
            }
        )
    else:
        show_prune(result, dry_run=dry_run)
    if result.count("failed"):
        raise typer.Exit(1)


async def _prune(
    settings: Settings,
    machine: str | None,
    project: str | None,
    override: RetentionPolicy | None,
    *,
    dry_run: bool,
    lock_wait: float,
    steps: Callable[[str, int, int], None] | None = None,
) -> PruneResult:
    from autovibe.checkpoints import prune as pruning
    from autovibe.cli.commands.checkpoint import wait_for_locks
    from autovibe.composition import LOCAL_ACTOR, open_machines

    async with open_machines(settings) as deps:
        plans = await pruning.plan_prune(deps, project=project, machine=machine, override=override)
        if dry_run:
            return pruning.PruneResult(tuple(plans), None)
        wait_for_locks(deps, lock_wait)
        return await pruning.apply(deps, plans, actor=LOCAL_ACTOR, lock_wait_s=lock_wait, progress=steps)


def show_prune(result: PruneResult, *, dry_run: bool) -> None:
    rows = []
    for plan in result.plans:
        if plan.skipped:
            rows.append((plan.machine, "-", "-", "skipped", plan.skipped))
            continue
        for item in plan.items:
            when = item.time.strftime("%Y-%m-%d %H:%M") if item.time else "-"
            why = ", ".join(item.reasons) if item.keep else (item.error or "not kept by the policy")
            rows.append((plan.machine, item.checkpoint, when, item.outcome, why))
    render.table(
        render.Table(
            title="Prune (dry run)" if dry_run else "Prune",
            columns=(
                render.Column("machine"),
                render.Column("checkpoint"),
                render.Column("time (UTC)"),
                render.Column("decision"),
                render.Column("reason"),
            ),
            rows=tuple(rows),
        )
    )
    if dry_run:
        render.line(f"{result.count('remove')} checkpoint(s) would be removed, {result.count('keep')} kept")
        return
    render.line(
        f"{result.count('removed')} removed, {result.count('kept')} kept, "
        f"{result.count('deferred')} deferred (VM locked; the next prune retries), "
        f"{result.count('failed')} failed"
        + (f"; operation {result.operation_id[:8]}" if result.operation_id else "")
    )


# ---- policies ------------------------------------------------------------------------------------
@policy_app.callback()
def policy(ctx: typer.Context) -> None:
    """Named retention policies: a project's default, or a machine's own."""
    show_help_without_subcommand(ctx)


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The policy's name, e.g. gfs.")],
    keep_last: KeepLast = 0,
    keep_hourly: KeepHourly = 0,
    keep_daily: KeepDaily = 0,
    keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    keep_yearly: KeepYearly = 0,
    keep_within: KeepWithin = None,
    keep_within_hourly: WithinHourly = None,
    keep_within_daily: WithinDaily = None,
    keep_within_weekly: WithinWeekly = None,
    keep_within_monthly: WithinMonthly = None,
    keep_within_yearly: WithinYearly = None,
    protect_branch_points: Annotated[
        bool,
        typer.Option(help="Keep checkpoints that a machine was branched from, whatever the rules say."),
    ] = True,
    description: Annotated[str, typer.Option(help="What the policy is for.")] = "",
    json_output: JsonFlag = False,
) -> None:
    """Create or replace a retention policy (restic's keep words)."""
    from autovibe.checkpoints import policies
    from autovibe.cli.commands.project import BadInput
    from autovibe.composition import store

    rules = _rules(
        last=keep_last, hourly=keep_hourly, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly,
        yearly=keep_yearly, within=keep_within, within_hourly=keep_within_hourly,
        within_daily=keep_within_daily, within_weekly=keep_within_weekly,
        within_monthly=keep_within_monthly, within_yearly=keep_within_yearly,
    )  # fmt: skip
    if not rules:
        raise BadInput("give at least one --keep-* rule (an empty policy would keep everything)")
    rules["protect_branch_points"] = protect_branch_points
    settings = load_cli_settings(ctx)
    if settings.hub_url:
        saved = hub_calls.policy_set(settings, name, _policy(rules), description)
    else:
        with store(settings) as db:
            saved = policies.save(db, name, _policy(rules), description=description)
    _emit_policy(settings, saved, json_output)


def _emit_policy(settings: Settings, read: PolicyRead, json_output: bool) -> None:
    if json_output:
        render.emit_json({**json_envelope(settings), "policy": read.model_dump(mode="json")})
        return
    render.line(f"policy '{read.name}': {read.summary}")
    render.line(f"  restic words: {' '.join(read.rules.flags())}")
    used = [f"project {p}" for p in read.projects] + [f"machine {m}" for m in read.machines]
    render.line(f"  used by: {', '.join(used) if used else 'nothing yet (attach it with `policy attach`)'}")


@policy_app.command("list")
def policy_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every retention policy and where it is attached."""
    from autovibe.checkpoints import policies
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        found = hub_calls.policy_list(settings)
    else:
        with store(settings) as db:
            found = policies.list_all(db)
    if json_output:
        render.emit_json({**json_envelope(settings), "policies": [p.model_dump(mode="json") for p in found]})
        return
    render.table(
        render.Table(
            title=f"Retention policies ({len(found)})",
            columns=(render.Column("name"), render.Column("rules"), render.Column("used by")),
            rows=tuple(
                (
                    p.name,
                    " ".join(p.rules.flags()),
                    ", ".join([*(f"project {x}" for x in p.projects), *(f"machine {x}" for x in p.machines)])
                    or "-",
                )
                for p in found
            ),
        )
    )


@policy_app.command("show")
def policy_show(ctx: typer.Context, name: str, json_output: JsonFlag = False) -> None:
    """One policy in words, in restic's flags, and where it is attached."""
    from autovibe.checkpoints import policies
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        found = hub_calls.policy_show(settings, name)
    else:
        with store(settings) as db:
            found = policies.get(db, name)
    _emit_policy(settings, found, json_output)


@policy_app.command("delete")
def policy_delete(ctx: typer.Context, name: str) -> None:
    """Delete a policy that nothing uses."""
    from autovibe.checkpoints import policies
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        hub_calls.policy_delete(settings, name)
    else:
        with store(settings) as db:
            policies.delete(db, name)
    render.line(f"deleted policy '{name}'")


@policy_app.command("attach")
def policy_attach(
    ctx: typer.Context, name: str, project: ProjectOpt = None, machine: MachineOpt = None
) -> None:
    """Make NAME a project's default policy (--project) or a machine's own (--machine)."""
    from autovibe.checkpoints import policies
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        hub_calls.policy_attach(settings, name, project=project, machine=machine)
    else:
        with store(settings) as db:
            policies.attach(db, name, project=project, machine=machine)
    render.line(f"policy '{name}' now applies to {_scope(project, machine)}")


@policy_app.command("detach")
def policy_detach(ctx: typer.Context, project: ProjectOpt = None, machine: MachineOpt = None) -> None:
    """Remove a project's default policy or a machine's own."""
    from autovibe.checkpoints import policies
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        hub_calls.policy_detach(settings, project=project, machine=machine)
    else:
        with store(settings) as db:
            policies.detach(db, project=project, machine=machine)
    render.line(f"{_scope(project, machine)} has no policy of its own now")


def _scope(project: str | None, machine: str | None) -> str:
    return f"project '{project}'" if project is not None else f"machine '{machine}'"


# ---- schedules -----------------------------------------------------------------------------------
@schedule_app.callback()
def schedule(ctx: typer.Context) -> None:
    """Checkpoints on an interval, per machine or per project; `autovibe hub tick` takes due ones."""
    show_help_without_subcommand(ctx)


@schedule_app.command("set")
def schedule_set(
    ctx: typer.Context,
    machine: Annotated[str | None, typer.Argument(metavar="[MACHINE]", help="The machine.")] = None,
    project: Annotated[str | None, typer.Option(help="Every machine of this project.")] = None,
    every: Annotated[str, typer.Option(help="Interval, e.g. 6h, 1d, 30m (at least 5m).")] = "1d",
    ram: Annotated[bool, typer.Option(help="Save RAM state of running machines.")] = True,
    prune_after: Annotated[
        bool, typer.Option("--prune/--no-prune", help="Apply the retention policy after each checkpoint.")
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Take a checkpoint of MACHINE (or of each machine of --project) every --every."""
    from autovibe.checkpoints import schedules
    from autovibe.cli.commands.project import BadInput
    from autovibe.composition import store
    from autovibe.machines.models import parse_ttl

    try:
        interval = parse_ttl(every)
    except ValueError as exc:
        raise BadInput(f"--every: {exc}") from None
    settings = load_cli_settings(ctx)
    if settings.hub_url:
        saved = hub_calls.schedule_set(
            settings, every_s=int(interval.total_seconds()), project=project, machine=machine, ram=ram,
            prune=prune_after,
        )  # fmt: skip
    else:
        with store(settings) as db:
            saved = schedules.set_schedule(
                db, every=interval, project=project, machine=machine, ram=ram, prune=prune_after
            )
    if json_output:
        render.emit_json({**json_envelope(settings), "schedule": saved.model_dump(mode="json")})
        return
    render.line(
        f"{saved.scope} '{saved.target}': a checkpoint every {every}"
        + (" with RAM" if saved.ram else ", disk only")
        + (", then prune" if saved.prune else "")
        + "; `autovibe hub tick` takes it when due"
    )


@schedule_app.command("list")
def schedule_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every checkpoint schedule with its last and next run."""
    from autovibe.checkpoints import schedules
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        found = hub_calls.schedule_list(settings)
    else:
        with store(settings) as db:
            found = schedules.list_schedules(db)
    if json_output:
        render.emit_json({**json_envelope(settings), "schedules": [s.model_dump(mode="json") for s in found]})
        return
    render.table(
        render.Table(
            title=f"Checkpoint schedules ({len(found)})",
            columns=(
                render.Column("scope"),
                render.Column("target"),
                render.Column("every", "right"),
                render.Column("RAM"),
                render.Column("prune"),
                render.Column("last run (UTC)"),
                render.Column("next due (UTC)"),
            ),
            rows=tuple(
                (
                    s.scope,
                    s.target,
                    _interval(s.every_s),
                    "yes" if s.ram else "no",
                    "yes" if s.prune else "no",
                    s.last_run_at.strftime("%Y-%m-%d %H:%M") if s.last_run_at else "never",
                    s.next_due_at.strftime("%Y-%m-%d %H:%M") if s.next_due_at else "now",
                )
                for s in found
            ),
        )
    )


def _interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@schedule_app.command("remove")
def schedule_remove(
    ctx: typer.Context,
    machine: Annotated[str | None, typer.Argument(metavar="[MACHINE]", help="The machine.")] = None,
    project: Annotated[str | None, typer.Option(help="The project.")] = None,
) -> None:
    """Stop taking scheduled checkpoints of MACHINE or --project (existing checkpoints stay)."""
    from autovibe.checkpoints import schedules
    from autovibe.composition import store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        removed = hub_calls.schedule_remove(settings, project=project, machine=machine)
    else:
        with store(settings) as db:
            removed = schedules.remove_schedule(db, project=project, machine=machine)
    render.line(f"removed the schedule of {_scope(project, machine)}" if removed else "there was no schedule")
