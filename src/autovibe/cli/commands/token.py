"""``autovibe token ...``: API tokens (create, list, revoke).

A token is shown once, when created; the store keeps only a keyed hash of it (see
:mod:`autovibe.security.identity`). The key lives apart from the store, in ``token.key`` in the XDG
config dir (``~/.config/autovibe/token.key``, mode 0600), and is made on first use. With ``--hub URL``
the hub makes the token with its own key, and the secret comes back once, in the answer.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import remote_admin, render
from autovibe.cli.commands import json_envelope, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag
from autovibe.cli.commands.user import admin_store, target_settings

if TYPE_CHECKING:
    from datetime import timedelta

    from autovibe.security.identity import TokenRead

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)


@app.callback()
def token(ctx: typer.Context) -> None:
    """API tokens: how users authenticate to the hub's API."""
    show_help_without_subcommand(ctx)


def _ttl(text: str | None) -> timedelta | None:
    from autovibe.machines.models import parse_ttl

    if text is None:
        return None
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise BadInput(f"--ttl: {exc}") from None


@app.command()
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    ttl: Annotated[
        str | None, typer.Option(metavar="DURATION", help="Lifetime, e.g. 30d or 12h; unset = no expiry.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a token for USER and print it, the only time it is shown."""
    from autovibe.composition import token_key_path
    from autovibe.security.identity import create_token, server_key_from

    lifetime = _ttl(ttl)
    settings = target_settings(ctx, json_output=json_output)
    if settings.hub_url:
        read, secret = remote_admin.create_token(settings, user, description=description, ttl=lifetime)
    else:
        with admin_store(settings, "token.create", f"token for user {user}") as db:
            key = server_key_from(token_key_path(settings))
            read, secret = create_token(db, user, description=description, ttl=lifetime, key=key)
    warning = "this is the only time the token is shown: store it now, it cannot be shown again"
    if json_output:
        render.emit_json({**json_envelope(settings), "token": _token_dict(read), "secret": secret})
        render.note(warning)
        return
    expires = f"expires {_when(read.expires_at, never='never')}"
    render.line(f"created token {read.token_id} for user '{read.user}' ({expires})")
    render.line(secret)
    render.note(warning)


@app.command("list")
def list_(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Every token (never its secret): owner, state, expiry, last use."""
    from autovibe.composition import store
    from autovibe.security.identity import list_tokens

    settings = target_settings(ctx, json_output=json_output)
    if settings.hub_url:
        tokens = remote_admin.list_tokens(settings, user)
    else:
        with store(settings) as db:
            tokens = list_tokens(db, user)
    if json_output:
        render.emit_json({**json_envelope(settings), "tokens": [_token_dict(t) for t in tokens]})
        return
    now = datetime.now(UTC)
    render.table(
        render.Table(
            title=f"Tokens ({len(tokens)})",
            columns=tuple(
                render.Column(name) for name in ("id", "user", "state", "expires", "last used", "description")
            ),
            rows=tuple(
                (
                    t.token_id,
                    t.user,
                    t.state(now),
                    _when(t.expires_at, never="never"),
                    _when(t.last_used_at, never="never"),
                    t.description,
                )
                for t in tokens
            ),
        )
    )


@app.command()
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The id `token list` shows.")],
) -> None:
    """Revoke a token for good (it stops authenticating at once)."""
    from autovibe.security.identity import revoke_token

    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        read = remote_admin.revoke_token(settings, token_id)
    else:
        with admin_store(settings, "token.revoke", f"token {token_id}") as db:
            read = revoke_token(db, token_id)
    render.line(f"revoked token {read.token_id} of user '{read.user}'")


def _token_dict(read: TokenRead) -> dict[str, object]:
    return {**asdict(read), "state": read.state(datetime.now(UTC))}


def _when(moment: datetime | None, *, never: str) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else never
