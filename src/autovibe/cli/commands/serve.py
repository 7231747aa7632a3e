"""``autovibe serve``: run the hub (REST API, job workers, scheduler) until stopped."""

from __future__ import annotations

import contextlib
import socket
from typing import Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import load_cli_settings

app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on [setting hub.host].")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port; 0 picks a free one [setting hub.port].")
    ] = None,
) -> None:
    """Serve the hub's REST API (OpenAPI at /openapi.json) and run its job workers and, on the replica
    that holds the lead, the scheduler loop, until Ctrl-C or SIGTERM.

    Replicas on one PostgreSQL store (AUTOVIBE_DATABASE_URL) share the work: one leads the scheduler,
    each job runs on exactly one. Callers authenticate with API tokens (`autovibe token create`).
    """
    import uvicorn

    from autovibe.api.app import create_app

    settings = load_cli_settings(ctx)
    hub = settings.hub
    host = host or hub.host
    port = hub.port if port is None else port
    try:
        sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound = sock.getsockname()[1]
    scheme = "https" if hub.ssl_certfile else "http"
    render.header(f"autovibe hub for {_target(settings)}")
    render.line(f"store: {_store(settings)}")
    render.line(f"{hub.workers} job workers; a scheduler pass every {hub.tick_interval_s:g} s on the leader")
    render.line(f"listening on {scheme}://{_show(host)}:{bound}")
    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level,
        access_log=False,
        ssl_certfile=str(hub.ssl_certfile) if hub.ssl_certfile else None,
        ssl_keyfile=str(hub.ssl_keyfile) if hub.ssl_keyfile else None,
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    render.line("stopped")
    if not server.started:
        raise typer.Exit(1)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _target(settings: object) -> str:
    from autovibe.composition import describe_target
    from autovibe.settings import Settings

    assert isinstance(settings, Settings)
    return describe_target(settings)


def _store(settings: object) -> str:
    from autovibe.settings import Settings

    assert isinstance(settings, Settings)
    if settings.database_url is None:
        return f"SQLite {settings.data_dir / 'autovibe.db'} (one replica; use PostgreSQL to run several)"
    from sqlalchemy.engine import make_url

    return make_url(settings.store_url).render_as_string(hide_password=True)
