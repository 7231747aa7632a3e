"""``autovibe approval list|approve|reject`` (and the shortcut ``autovibe approve ID``).

High-risk actions are held by the gate as pending approval requests. Another identity with the role
for the action approves one (the two-person rule: not the requester); then the requester retries the
same command with ``--approval ID``. Act as a user with ``AUTOVIBE_TOKEN=avt_...``; without a token the
CLI acts as the local admin. With ``--hub URL`` the hub decides, as the token's user.
"""

from __future__ import annotations

from typing import Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, show_help_without_subcommand
from autovibe.cli.commands.project import JsonFlag

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)
approve_app = typer.Typer(rich_markup_mode=None, add_completion=False)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The approval request's id (or a unique prefix).")]


@app.callback()
def approval(ctx: typer.Context) -> None:
    """Approval requests for high-risk actions."""
    show_help_without_subcommand(ctx)


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Pending approval requests."""
    from autovibe.composition import gate, store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_admin

        pending = remote_admin.pending_approvals(settings)
    else:
        with store(settings) as db:
            pending = gate(settings, db).pending()
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "pending": [
                    {
                        "id": p.id, "action": p.action, "target": p.target, "project": p.project,
                        "risk": p.risk, "reasons": p.reasons.get("reasons", []),
                        "requested_by": p.requested_by, "requested_at": p.requested_at.isoformat(),
                    }
                    for p in pending
                ],
            }
        )  # fmt: skip
        return
    render.table(
        render.Table(
            title=f"Pending approvals ({len(pending)})",
            columns=(
                render.Column("id"),
                render.Column("action"),
                render.Column("target"),
                render.Column("risk", "right"),
                render.Column("requested by"),
                render.Column("why"),
            ),
            rows=tuple(
                (
                    p.id[:8],
                    p.action,
                    p.target,
                    str(p.risk),
                    p.requested_by,
                    "; ".join(p.reasons.get("reasons", [])),
                )
                for p in pending
            ),
        )
    )


def _decide(ctx: typer.Context, approval_id: str, *, approve: bool) -> None:
    from autovibe.composition import gate, identity, store

    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_admin

        row = remote_admin.decide_approval(settings, approval_id, approve=approve)
    else:
        with store(settings) as db:
            row = gate(settings, db).decide(identity(settings, db), approval_id, approve=approve)
    verb = "approved" if approve else "rejected"
    render.line(f"{verb} {row.id[:8]}: {row.action} on {row.target} (requested by {row.requested_by})")
    if approve:
        render.line(f"the requester now retries the same command with --approval {row.id[:8]}")


@app.command("approve")
def approve(ctx: typer.Context, approval_id: IdArg) -> None:
    """Approve a pending request (not your own while the two-person rule is on)."""
    _decide(ctx, approval_id, approve=True)


@app.command("reject")
def reject(ctx: typer.Context, approval_id: IdArg) -> None:
    """Reject a pending request."""
    _decide(ctx, approval_id, approve=False)


@approve_app.command()
def approve_shortcut(ctx: typer.Context, approval_id: IdArg) -> None:
    """Approve a pending request (same as `autovibe approval approve ID`)."""
    _decide(ctx, approval_id, approve=True)
