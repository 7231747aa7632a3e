"""``autovibe user ...``: the hub's users (add, list, disable, enable).

A user acts through API tokens (``autovibe token``) with the roles bound to it (``autovibe role``);
local CLI use needs no user: it acts as the built-in local admin. With ``--hub URL`` the hub does the
work, as the user of ``AUTOVIBE_TOKEN``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import remote_admin, render
from autovibe.cli.commands import json_envelope, load_cli_settings, show_help_without_subcommand
from autovibe.cli.commands.project import JsonFlag
from autovibe.composition import admin_action

if TYPE_CHECKING:
    from autovibe.settings import Settings
    from autovibe.store.db import Database

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The user's name.")]


@app.callback()
def user(ctx: typer.Context) -> None:
    """Users of the hub: each acts through API tokens with the roles bound to it."""
    show_help_without_subcommand(ctx)


def target_settings(ctx: typer.Context, *, json_output: bool) -> Settings:
    """The command's settings, with the target header (the hub's URL with ``--hub``) for humans."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    return settings


@contextmanager
def admin_store(settings: Settings, action: str, target: str, **gate: Any) -> Iterator[Database]:
    """The local store, inside the gate for an administrative action of this invocation's identity
    (``gate`` takes ``admin_action``'s keywords: ``params``, ``details``)."""
    from autovibe.composition import store

    with store(settings) as db, admin_action(settings, db, action, target, **gate):
        yield db


@app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '_' and '-'.")],
    display_name: Annotated[str, typer.Option(help="A human name, e.g. 'Bob Smith'.")] = "",
) -> None:
    """Add a user (enabled, with no roles until one is bound)."""
    from autovibe.security import identity

    identity.check_name(name)
    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        added = remote_admin.add_user(settings, name, display_name)
    else:
        with admin_store(settings, "user.add", f"user {name}") as db:
            added = identity.add_user(db, name, display_name)
    render.line(f"added user '{added.name}' (no roles yet: autovibe role bind {added.name} ROLE)")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every user, enabled or not."""
    from autovibe.composition import store
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=json_output)
    if settings.hub_url:
        users = remote_admin.list_users(settings)
    else:
        with store(settings) as db:
            users = identity.list_users(db)
    if json_output:
        render.emit_json({**json_envelope(settings), "users": [asdict(user) for user in users]})
        return
    render.table(
        render.Table(
            title=f"Users ({len(users)})",
            columns=(
                render.Column("name"),
                render.Column("display name"),
                render.Column("state"),
                render.Column("created"),
            ),
            rows=tuple(
                (
                    user.name,
                    user.display_name,
                    "disabled" if user.disabled else "enabled",
                    user.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                )
                for user in users
            ),
        )
    )


@app.command()
def disable(ctx: typer.Context, name: NameArg) -> None:
    """Disable a user: its tokens stop working until it is enabled again."""
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        remote_admin.set_user_disabled(settings, name, disabled=True)
    else:
        with admin_store(settings, "user.disable", f"user {name}") as db:
            identity.disable_user(db, name)
    render.line(f"disabled user '{name}': its tokens no longer authenticate")


@app.command()
def enable(ctx: typer.Context, name: NameArg) -> None:
    """Enable a disabled user again (its unexpired, unrevoked tokens work again)."""
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        remote_admin.set_user_disabled(settings, name, disabled=False)
    else:
        with admin_store(settings, "user.enable", f"user {name}") as db:
            identity.enable_user(db, name)
    render.line(f"enabled user '{name}'")
