"""``autovibe ops ...``: the operations journal — what ran, what is unfinished, and finishing it.

Every mutating workflow (deploying, deleting a machine…) is a journaled operation. After a crash or a
``kill -9``, ``ops resume`` drives each unfinished operation to completed or fully undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import remote, render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.operations.models import OperationRecord
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of tables.")]
EXIT_STUCK = 1


@app.callback()
def ops(ctx: typer.Context) -> None:
    """Journaled operations: list, inspect, resume after a crash."""
    show_help_without_subcommand(ctx)


def record_dict(record: OperationRecord) -> dict[str, Any]:
    """An operation as JSON-ready data: its fields and its steps (times in UTC ISO 8601)."""
    return asdict(record)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Recent operations, finished ones too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 100,
    json_output: JsonFlag = False,
) -> None:
    """Unfinished operations (running, compensating, stuck); with --all the recent ones, newest first."""
    from autovibe.composition import describe_target, store
    from autovibe.operations.journal import Journal

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        records = remote.list_operations(settings, unfinished=not all_, limit=limit)
    else:
        with store(settings) as db:
            records = Journal(db).recent(unfinished=not all_, limit=limit)
    if json_output:
        render.emit_json({**json_envelope(settings), "operations": [record_dict(r) for r in records]})
        return
    render.table(operations_table(records, title="Operations" if all_ else "Unfinished operations"))
    if not all_ and not records:
        render.line("nothing unfinished; `autovibe ops list --all` shows the recent ones")


def operations_table(records: Sequence[OperationRecord], *, title: str = "Operations") -> render.Table:
    """Operations as a table: short id, kind, what it is about, status, current step (also the demo's)."""
    return render.Table(
        title=f"{title} ({len(records)})",
        columns=(
            render.Column("id"),
            render.Column("kind"),
            render.Column("subject"),
            render.Column("status"),
            render.Column("step"),
            render.Column("updated"),
        ),
        rows=tuple(
            (
                record.id[:8],
                record.kind,
                _subject(record),
                record.status,
                _step(record),
                _time(record.updated_at),
            )
            for record in records
        ),
    )


def _subject(record: OperationRecord) -> str:
    name, vmid = record.params.get("name"), record.params.get("vmid") or record.state.get("vmid")
    parts = [str(name) if name else "", f"VM {vmid}" if vmid else ""]
    return " ".join(part for part in parts if part) or "-"


def _step(record: OperationRecord) -> str:
    current = record.current_step
    if current is None:
        return "-"
    return f"{current.name} ({current.status})" if not record.status.finished else current.name


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


@app.command()
def show(
    ctx: typer.Context,
    op_id: Annotated[str, typer.Argument(metavar="ID", help="Operation id or a unique prefix (4+ chars).")],
    json_output: JsonFlag = False,
) -> None:
    """One operation: its parameters, what it learned, and each step's status, times and error."""
    from autovibe.composition import describe_target, store
    from autovibe.operations.journal import Journal

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        record = remote.show_operation(settings, op_id)
    else:
        with store(settings) as db:
            record = Journal(db).get(op_id)
    if json_output:
        render.emit_json({**json_envelope(settings), "operation": record_dict(record)})
        return
    for key, value in (
        ("operation", record.id),
        ("kind", record.kind),
        ("subject", _subject(record)),
        ("status", str(record.status)),
        ("actor", record.actor),
        ("created", _time(record.created_at)),
        ("updated", _time(record.updated_at)),
        ("error", record.error or "-"),
    ):
        render.line(f"{key:<10} {value}")
    render.table(
        render.Table(
            title=f"Steps ({len(record.steps)})",
            columns=(
                render.Column("#", "right"),
                render.Column("step"),
                render.Column("status"),
                render.Column("started"),
                render.Column("finished"),
                render.Column("error"),
            ),
            rows=tuple(
                (
                    str(s.index),
                    s.name,
                    s.status,
                    _time(s.started_at),
                    _time(s.finished_at),
                    " ".join((s.error or "-").split()),
                )
                for s in record.steps
            ),
        )
    )


@app.command()
def resume(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Finish or undo every operation whose process died (and retry stuck ones).

    A deploy is undone (the VM destroyed if it is ours, the record removed); a delete is finished.
    Exits 1 if any operation is still stuck afterwards.
    """
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    results = remote.resume_operations(settings) if settings.hub_url else run(_resume(settings))
    stuck = [after for _before, after in results if not after.status.finished]
    if json_output:
        rows = [{**record_dict(after), "was": before} for before, after in results]
        render.emit_json({**json_envelope(settings), "resumed": rows, "stuck": len(stuck)})
    elif not results:
        render.line("nothing to resume: no operation was left unfinished by a process that died")
    else:
        render.table(
            render.Table(
                title=f"Resumed ({len(results)})",
                columns=(
                    render.Column("id"),
                    render.Column("kind"),
                    render.Column("subject"),
                    render.Column("was"),
                    render.Column("now"),
                ),
                rows=tuple(
                    (after.id[:8], after.kind, _subject(after), before, after.status)
                    for before, after in results
                ),
            )
        )
    for record in stuck:
        render.error(f"operation {record.id[:8]} is still {record.status}: {record.error or 'unknown error'}")
    if stuck:
        raise typer.Exit(EXIT_STUCK)


async def _resume(settings: Settings) -> list[tuple[str, OperationRecord]]:
    # Importing the services registers their operation kinds with the runner.
    import autovibe.checkpoints.prune
    import autovibe.checkpoints.service
    import autovibe.machines.deploy
    import autovibe.machines.service
    import autovibe.usage.enforce
    import autovibe.usage.limits  # noqa: F401
    from autovibe.composition import open_machines
    from autovibe.errors import AutovibeError
    from autovibe.operations.journal import Journal
    from autovibe.operations.runner import Runner

    results: list[tuple[str, OperationRecord]] = []
    async with open_machines(settings) as deps:
        journal = Journal(deps.db)
        runner = Runner(journal, deps)
        for record in journal.orphans():
            try:
                with deps.security.guard_sync(
                    deps.identity, "ops.resume", target=f"operation {record.id} ({record.kind})"
                ):
                    after = await runner.resume(record)
            except AutovibeError as exc:  # an unknown kind, PVE unreachable: leave it, report it
                after = replace(record, error=f"not resumed: {exc}")
            results.append((str(record.status), after))
    return results
