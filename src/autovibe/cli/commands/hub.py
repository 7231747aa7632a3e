"""``autovibe hub ...``: the hub's periodic work, one pass at a time.

The future hub runs these passes continuously; ``hub tick`` runs one now (from cron, a systemd timer,
or by hand), so leases are honoured even before the hub exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.checkpoints.schedules import ScheduledRun
    from autovibe.operations.models import OperationRecord
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of lines.")]


@app.callback()
def hub(ctx: typer.Context) -> None:
    """The hub's scheduler loop, one pass at a time."""
    show_help_without_subcommand(ctx)


@app.command()
def tick(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """One pass of the scheduler: take due scheduled checkpoints (and prune after them), then stop and
    delete every machine whose lease has run out.

    A machine whose profile asks for it gets a final checkpoint first. Each change is a journaled
    operation (`autovibe ops list --all` shows them; `ops resume` finishes one that was interrupted).
    Exit code 1 when a scheduled checkpoint failed.
    """
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    scheduled, expired = run(_tick(settings))
    failed = any(r.error for r in scheduled)
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "checkpoints": [r.model_dump(mode="json") for r in scheduled],
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
    for r in scheduled:
        if r.error:
            render.line(f"scheduled checkpoint of '{r.machine}' failed: {r.error}")
            continue
        pruned = f"; pruned {len(r.removed)}" if r.removed else ""
        deferred = f", {len(r.deferred)} deferred (VM locked)" if r.deferred else ""
        render.line(f"scheduled checkpoint '{r.checkpoint}' of '{r.machine}'{pruned}{deferred}")
    for record in expired:
        render.line(
            f"lease expired: deleted machine '{record.params['name']}' (VM {record.params['vmid']}); "
            f"operation {record.id[:8]}"
        )
    taken = sum(1 for r in scheduled if not r.error)
    render.line(f"{taken} scheduled checkpoint(s) taken" if scheduled else "no checkpoint was due")
    render.line(f"{len(expired)} lease(s) expired" if expired else "no lease has expired")
    raise typer.Exit(1 if failed else 0)


async def _tick(settings: Settings) -> tuple[list[ScheduledRun], list[OperationRecord]]:
    from autovibe.checkpoints import schedules
    from autovibe.composition import LOCAL_ACTOR, open_machines, profiles
    from autovibe.machines import service

    async with open_machines(settings) as deps:
        # Checkpoints first: a machine whose lease ends in this pass still gets its due checkpoint.
        scheduled = await schedules.run_due(deps, actor=LOCAL_ACTOR)
        return scheduled, await service.expire_due(deps, profiles(settings), actor=LOCAL_ACTOR)
