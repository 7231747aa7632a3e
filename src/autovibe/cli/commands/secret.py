"""``autovibe secret ...``: credentials kept encrypted in the store (set, list, delete, rotate-key).

A value is read from stdin (``printf %s "$TOKEN" | autovibe secret set NAME``) or a hidden prompt,
never from the command line, where shell history and process listings would keep it. The key comes
from ``AUTOVIBE_SECRET_KEY`` when set, else from the key file (``--key-file``, default
``$XDG_CONFIG_HOME/autovibe/secret.key``, created with mode 0600 on first use).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, show_help_without_subcommand
from autovibe.composition import admin_action
from autovibe.errors import AutovibeInvalid

if TYPE_CHECKING:
    from autovibe.security.secrets import KeyRing, SecretInfo
    from autovibe.settings import Settings
    from autovibe.store.db import Database

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of tables.")]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        envvar="AUTOVIBE_SECRET_KEY_FILE",
        dir_okay=False,
        help="The key file (default: secret.key in the XDG config dir); AUTOVIBE_SECRET_KEY wins over it.",
    ),
]


@app.callback()
def secret(ctx: typer.Context) -> None:
    """Secrets: credentials autovibe keeps Fernet-encrypted in its store; values are never shown."""
    show_help_without_subcommand(ctx)


@contextmanager
def _open(ctx: typer.Context, *, json_output: bool = False) -> Iterator[tuple[Settings, Database]]:
    from autovibe.composition import describe_target, store

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    with store(settings) as db:
        yield settings, db


def open_keyring(key_file: Path | None, *, create: bool = False) -> KeyRing:
    """The key ring from ``AUTOVIBE_SECRET_KEY`` (read here, at the edge) or the key file."""
    from autovibe.security.secrets import KEY_ENV, KeyRing

    return KeyRing.load(env_value=os.environ.get(KEY_ENV), path=key_file, create=create)


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        # `echo VALUE |` adds a newline the value does not have.
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise AutovibeInvalid(
            f"no value for secret {name!r} on stdin", hint=f"printf %s VALUE | autovibe secret set {name}"
        )
    return value


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="1-64 letters, digits, '.', '_' or '-'.")],
    key_file: KeyFileOption = None,
) -> None:
    """Store a secret; the value comes from stdin or a hidden prompt, never from the command line."""
    from autovibe.security.secrets import SecretStore, check_name

    check_name(name)
    value = _read_value(name)
    with _open(ctx) as (settings, db), admin_action(settings, db, "secret.set", f"secret {name}"):
        info = SecretStore(db, open_keyring(key_file, create=True)).put(name, value)
    render.line(f"stored secret '{info.name}'")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every stored secret: names and timestamps, never values."""
    from autovibe.security.secrets import list_secrets

    with _open(ctx, json_output=json_output) as (settings, db):
        infos = list_secrets(db)
    if json_output:
        render.emit_json({**json_envelope(settings), "secrets": [info.as_dict() for info in infos]})
        return
    render.table(_table(infos))


def _table(infos: tuple[SecretInfo, ...]) -> render.Table:
    def when(moment: datetime) -> str:
        return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"

    return render.Table(
        title=f"secrets ({len(infos)})",
        columns=(render.Column("name"), render.Column("created"), render.Column("updated")),
        rows=tuple((info.name, when(info.created_at), when(info.updated_at)) for info in infos),
    )


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The secret to forget.")]) -> None:
    """Forget a stored secret."""
    from autovibe.security.secrets import delete_secret

    with _open(ctx) as (settings, db), admin_action(settings, db, "secret.delete", f"secret {name}"):
        delete_secret(db, name)
    render.line(f"deleted secret '{name}'")


@app.command("rotate-key")
def rotate_key(ctx: typer.Context, key_file: KeyFileOption = None) -> None:
    """Re-encrypt every secret with a new key, then retire the old keys from the key file."""
    from autovibe.security.secrets import rotate

    with _open(ctx) as (settings, db), admin_action(settings, db, "secret.rotate", "the secret key"):
        done = rotate(db, open_keyring(key_file))
    render.line(
        f"re-encrypted {done.reencrypted} secret(s) with a new key; "
        f"retired {done.retired_keys} old key(s) from {done.keyring.path}"
    )
