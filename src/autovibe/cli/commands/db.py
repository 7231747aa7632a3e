"""``autovibe db ...``: the store autovibe keeps beside PVE (projects, machines, operations)."""

from __future__ import annotations

import typer

from autovibe.cli import render
from autovibe.cli.commands import load_cli_settings, show_help_without_subcommand

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)


@app.callback()
def db(ctx: typer.Context) -> None:
    """The store: SQLite under the XDG data dir, or PostgreSQL via AUTOVIBE_DATABASE_URL."""
    show_help_without_subcommand(ctx)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Migrate the store to the newest schema (safe to repeat; every command also does it on first use).

    Run it once after upgrading autovibe when several hub replicas share one PostgreSQL database, so
    the migration does not happen inside whichever command runs first.
    """
    from autovibe.composition import describe_target
    from autovibe.store.db import Database

    settings = load_cli_settings(ctx)
    render.header(describe_target(settings))
    database = Database(settings.store_url)
    try:
        with render.progress(f"migrate {database.safe_url}"):
            database.upgrade()
    finally:
        database.dispose()
    render.line(f"the store at {database.safe_url} is at the newest schema")
