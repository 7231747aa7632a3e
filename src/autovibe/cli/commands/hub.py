"""``autovibe hub ...``: the hub's periodic work, one pass at a time.

The hub (``autovibe serve``) runs these passes continuously on its leader; ``hub tick`` runs one now
(from cron, a systemd timer, or by hand) without a hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.hub.tick import TickOutcome
    from autovibe.settings import Settings

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
    outcome = run(_pass(settings, dry_run=dry_run))
    usage, usage_error = outcome.usage, outcome.usage_error
    scheduled, refreshed, expired = outcome.scheduled, outcome.refreshed, outcome.expired
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


async def _pass(settings: Settings, *, dry_run: bool) -> TickOutcome:
    """The hub's scheduler pass (``autovibe.hub.tick``), run once from here as the local admin."""
    from autovibe.composition import LOCAL_ACTOR, machine_deps, open_connection, store
    from autovibe.hub.tick import run_pass

    with store(settings) as db:
        async with open_connection(settings) as connection:
            deps = machine_deps(settings, connection.pve, db, clock=connection.clock)
            return await run_pass(settings, deps, connection.clock, dry_run=dry_run, actor=LOCAL_ACTOR)
