"""``autovibe hub ...``: the hub's periodic work, one pass at a time.

The future hub runs these passes continuously; ``hub tick`` runs one now (from cron, a systemd timer,
or by hand), so usage is sampled, quotas enforced and leases honoured even before the hub exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.checkpoints.schedules import ScheduledRun
    from autovibe.network.service import RefreshReport
    from autovibe.operations.models import OperationRecord
    from autovibe.settings import Settings
    from autovibe.usage.service import TickReport

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of lines.")]


@app.callback()
def hub(ctx: typer.Context) -> None:
    """The hub's scheduler loop, one pass at a time."""
    show_help_without_subcommand(ctx)


@app.command()
def tick(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run the usage pass as a dry run (sample, record usage and decide; stop and alert "
            "nothing) and skip the checkpoint, network and lease parts.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """One pass of the scheduler: first the usage pass (sample every machine, check limits, stop idle
    machines, enforce project quotas), then take due scheduled checkpoints (and prune after them),
    refresh the network profiles' IP sets, then stop and delete every machine whose lease has run out.

    A machine whose profile asks for it gets a final checkpoint first. Each change is a journaled
    operation (`autovibe ops list --all` shows them; `ops resume` finishes one that was interrupted).
    A failed usage pass does not stop the other parts. Exit code 1 when the usage pass or a scheduled
    checkpoint failed.
    """
    from autovibe.cli.commands.quota import show_pass
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    usage, usage_error = run(_usage(settings, dry_run=dry_run))
    scheduled, refreshed, expired = ([], None, []) if dry_run else run(_tick(settings))
    failed = usage_error is not None or any(r.error for r in scheduled)
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "dry_run": dry_run,
                "usage": usage.model_dump(mode="json") if usage is not None else None,
                "usage_error": usage_error,
                "checkpoints": [r.model_dump(mode="json") for r in scheduled],
                "network": None
                if refreshed is None
                else {"changes": list(refreshed.changes), "failures": list(refreshed.failures)},
                "expired": [
                    {
                        "name": record.params["name"],
                        "vmid": record.params["vmid"],
                        "operation_id": record.id,
                        "status": record.status,
                    }
                    for record in expired
                ],
            }
        )
        raise typer.Exit(1 if failed else 0)
    if usage is not None:
        show_pass(usage)
    else:
        render.error(f"usage pass failed: {usage_error}")
    if dry_run:
        render.line("dry run: scheduled checkpoints and lease expiry were skipped")
        raise typer.Exit(1 if failed else 0)
    for r in scheduled:
        if r.error:
            render.line(f"scheduled checkpoint of '{r.machine}' failed: {r.error}")
            continue
        pruned = f"; pruned {len(r.removed)}" if r.removed else ""
        deferred = f", {len(r.deferred)} deferred (VM locked)" if r.deferred else ""
        render.line(f"scheduled checkpoint '{r.checkpoint}' of '{r.machine}'{pruned}{deferred}")
    if refreshed is not None:
        for change in refreshed.changes:
            render.line(f"network: {change}")
        for failure in refreshed.failures:
            render.line(f"network: {failure}")
    for record in expired:
        render.line(
            f"lease expired: deleted machine '{record.params['name']}' (VM {record.params['vmid']}); "
            f"operation {record.id[:8]}"
        )
    taken = sum(1 for r in scheduled if not r.error)
    render.line(f"{taken} scheduled checkpoint(s) taken" if scheduled else "no checkpoint was due")
    render.line(f"{len(expired)} lease(s) expired" if expired else "no lease has expired")
    raise typer.Exit(1 if failed else 0)


async def _usage(settings: Settings, *, dry_run: bool) -> tuple[TickReport | None, str | None]:
    """The usage pass, or why it failed: a PVE or store failure there must not hold up lease expiry."""
    from autovibe.cli.commands.quota import usage_pass
    from autovibe.errors import AutovibeError

    try:
        return await usage_pass(settings, dry_run=dry_run, as_hub=True), None
    except AutovibeError as exc:
        return None, exc.message


async def _tick(settings: Settings) -> tuple[list[ScheduledRun], RefreshReport, list[OperationRecord]]:
    from autovibe.checkpoints import schedules
    from autovibe.composition import LOCAL_ACTOR, network_context, open_machines, profiles
    from autovibe.errors import AutovibeError
    from autovibe.machines import service
    from autovibe.network import service as network
    from autovibe.security.gate import HUB

    async with open_machines(settings) as deps:
        deps.identity = HUB  # the scheduler acts on the schedules, leases and quotas admins set
        # Checkpoints first: a machine whose lease ends in this pass still gets its due checkpoint.
        scheduled = await schedules.run_due(deps, actor=LOCAL_ACTOR)
        try:
            refreshed = await network.refresh(deps, network_context(settings))
        except AutovibeError as exc:  # PVE trouble here must not hold up lease expiry
            refreshed = network.RefreshReport((), (f"refresh failed: {exc.message}",))
        return scheduled, refreshed, await service.expire_due(deps, profiles(settings), actor=LOCAL_ACTOR)
