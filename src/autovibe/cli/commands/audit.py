"""``autovibe audit ...``: the tamper-evident audit log — list, show, export, verify its hash chain.

Every decision of the policy gate and every action it let through is appended to a hash chain in the
store; ``audit verify`` recomputes the chain and names the first entry that was changed, deleted or
moved (exit 1). Entries cut from the end of the log leave no trace in the chain: record the head that
``audit verify`` prints and pass it back with ``--anchor ID:HASH``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag

if TYPE_CHECKING:
    from autovibe.security.audit import AuditRecord, VerifyResult
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

EXIT_BROKEN = 1
_ANCHOR = re.compile(r"(\d+):([0-9a-f]{64})")


@app.callback()
def audit(ctx: typer.Context) -> None:
    """The tamper-evident audit log: list, show, export, verify."""
    show_help_without_subcommand(ctx)


@app.command("list")
def list_(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option(help="Only entries by this identity.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (machine.create, ...).")] = None,
    project: Annotated[str | None, typer.Option(help="Only entries about this project.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only entries from a duration back (12h, 7d) or a UTC date or time on."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 100,
    json_output: JsonFlag = False,
) -> None:
    """The newest audit entries: when, who, what, on which target, the decision and the outcome."""
    from autovibe.cli.commands.usage import parse_since
    from autovibe.composition import describe_target, store
    from autovibe.security import audit as audit_log

    start = parse_since(since, datetime.now(UTC)) if since is not None else None
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_admin

        records = remote_admin.audit_entries(
            settings, since=start, actor=actor, action=action, project=project, limit=limit
        )
    else:
        with store(settings) as db:
            records = audit_log.list_entries(
                db, since=start, actor=actor, action=action, project=project, limit=limit
            )
    if json_output:
        render.emit_json({**json_envelope(settings), "entries": [_dict(r) for r in records]})
        return
    render.table(entries_table(records))
    if not records:
        render.line("no audit entries" + (" match" if since or actor or action or project else " yet"))


def entries_table(records: Sequence[AuditRecord]) -> render.Table:
    return render.Table(
        title=f"Audit entries ({len(records)})",
        columns=(
            render.Column("id", "right"),
            render.Column("at (UTC)"),
            render.Column("actor"),
            render.Column("action"),
            render.Column("target"),
            render.Column("project"),
            render.Column("decision"),
            render.Column("outcome"),
            render.Column("risk", "right"),
        ),
        rows=tuple(
            (
                str(r.id),
                _time(r.at),
                r.actor,
                r.action,
                r.target,
                r.project or "-",
                r.decision,
                r.outcome,
                str(r.risk),
            )
            for r in records
        ),
        styles=tuple("red" if r.decision == "deny" or r.outcome == "failed" else None for r in records),
    )


@app.command()
def show(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="The entry's id.")],
    json_output: JsonFlag = False,
) -> None:
    """One audit entry with its parameters (secrets masked) and its place in the hash chain."""
    from autovibe.composition import describe_target, store
    from autovibe.security import audit as audit_log

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_admin

        record = remote_admin.audit_entry(settings, entry_id)
    else:
        with store(settings) as db:
            record = audit_log.get(db, entry_id)
    if json_output:
        render.emit_json({**json_envelope(settings), "entry": _dict(record)})
        return
    for name, value in (
        ("entry", str(record.id)),
        ("at", f"{_time(record.at)} UTC"),
        ("actor", record.actor),
        ("action", record.action),
        ("target", record.target),
        ("project", record.project or "-"),
        ("decision", record.decision),
        ("outcome", record.outcome),
        ("risk", str(record.risk)),
        ("prev_hash", record.prev_hash),
        ("hash", record.hash),
    ):
        render.line(f"{name:<10} {value}")
    render.line("params")
    for line in json.dumps(record.params, indent=2, sort_keys=True, ensure_ascii=False).splitlines():
        render.line(f"  {line}")


@app.command()
def export(
    ctx: typer.Context,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="JSON Lines, one entry per line (the default).")
    ] = True,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write to this file instead of stdout."),
    ] = None,
) -> None:
    """Every entry, oldest first, as JSON Lines (with prev_hash and hash, so the copy can be checked)."""
    from autovibe.composition import describe_target, store
    from autovibe.security import audit as audit_log

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_admin

        count = _export_remote(remote_admin.audit_export(settings), settings, output)
    else:
        with store(settings) as db:
            if output is None:
                audit_log.export_jsonl(db, _Stdout())
                return
            render.header(describe_target(settings))
            with output.open("w", encoding="utf-8") as stream:
                count = audit_log.export_jsonl(db, stream)
    if output is not None:
        render.line(f"exported {count} audit entries to {output}")


def _export_remote(text: str, settings: Settings, output: Path | None) -> int:
    """Write the hub's export (JSON Lines) where the local export writes it; returns how many entries."""
    from autovibe.composition import describe_target

    if output is None:
        _Stdout().write(text)
    else:
        render.header(describe_target(settings))
        with output.open("w", encoding="utf-8") as stream:
            stream.write(text)
    return text.count("\n")


class _Stdout:
    """Export's stream when it goes to stdout: through render, the only module that prints."""

    def write(self, text: str, /) -> None:
        render.raw(text)


@app.command()
def verify(
    ctx: typer.Context,
    anchor: Annotated[
        str | None,
        typer.Option(
            metavar="ID:HASH",
            help="A head printed by an earlier verify: also fail if that entry is gone or different "
            "(catches entries deleted from the end, which the chain alone cannot show).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute the hash chain: exit 0 when it is intact, 1 naming the first entry that was changed,
    deleted or moved."""
    from autovibe.composition import audit_key, describe_target, store
    from autovibe.security import audit as audit_log

    expected = _parse_anchor(anchor) if anchor is not None else None
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_admin

        result = remote_admin.audit_verify(settings, expected)
    else:
        with store(settings) as db:
            result = audit_log.verify(db, key=audit_key(settings), anchor=expected)
    if json_output:
        render.emit_json({**json_envelope(settings), **_verdict(result)})
    elif result.ok and result.head_id is not None:
        render.line(f"audit log intact: {result.checked} entries, hash chain verified")
        render.line(f"head {result.head_id}:{result.head_hash} (keep it; check later with --anchor)")
    elif result.ok:
        render.line("audit log intact: it is empty")
    else:
        render.error(f"audit log tampered with: {result.problem}")
    if not result.ok:
        raise typer.Exit(EXIT_BROKEN)


def _parse_anchor(text: str) -> tuple[int, str]:
    match = _ANCHOR.fullmatch(text.strip().lower())
    if match is None:
        raise BadInput(f"--anchor: {text!r} is not ID:HASH (an entry id and its 64-hex-digit hash)")
    return int(match.group(1)), match.group(2)


def _verdict(result: VerifyResult) -> dict[str, Any]:
    return result.model_dump(mode="json")


def _dict(record: AuditRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
