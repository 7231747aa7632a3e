"""``autovibe sim ...``: serve the embedded PVE simulator to any client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from autovibe.cli import render

app = typer.Typer(
    help="The embedded Proxmox VE API simulator.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    """The embedded Proxmox VE API simulator (a group, even while it has one command)."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8006,
    tls: Annotated[
        bool, typer.Option("--tls/--no-tls", help="HTTPS with a self-signed certificate.")
    ] = False,
    state: Annotated[Path | None, typer.Option(help="Persist the cluster in this file.")] = None,
    speed: Annotated[float, typer.Option(min=0, help="Simulated seconds per real second.")] = 1.0,
    user: Annotated[list[str] | None, typer.Option(help="USER@REALM:PASSWORD (repeatable).")] = None,
    token: Annotated[list[str] | None, typer.Option(help="USER@REALM!NAME=SECRET (repeatable).")] = None,
    config: Annotated[Path | None, typer.Option(help="Users, tokens and ACLs (TOML or JSON).")] = None,
    faults: Annotated[Path | None, typer.Option(help="Fault-injection rules (docs/sim-faults.md).")] = None,
    cert_dir: Annotated[Path | None, typer.Option(help="Where the TLS certificate lives.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for MACs, UUIDs and fault dice.")] = 0,
) -> None:
    """Serve /api2/json over HTTP(S) until Ctrl-C: proxmoxer, Ansible and autovibe all talk to it."""
    from autovibe.sim.app import SimApp
    from autovibe.sim.launch import configure, tls_context
    from autovibe.sim.server import serve as serve_forever

    fresh = state is None or not state.exists()
    sim = SimApp.open(state, speed=speed, seed=seed)
    try:
        made = configure(
            sim, users=user or [], tokens=token or [], config_file=config, faults_file=faults, fresh=fresh
        )
    except (ValueError, OSError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    context, fingerprint = None, None
    if tls:
        where = cert_dir or (state.parent if state else Path.cwd()) / "sim-tls"
        context, fingerprint = tls_context(where)
    scheme = "https" if tls else "http"
    render.header(f"simulated cluster, serving {scheme}://{host}:{port}/api2/json")
    if fingerprint:
        render.line(f"certificate fingerprint (SHA-256): {fingerprint}")
    for userid, password in made.passwords.items():
        render.line(f"user {userid} password: {password}  (shown once)")
    for full in made.tokens:
        render.line(f"API token: {full}  (shown once)")
    render.line(f"state: {state or 'in memory'}; clock speed {speed}x; Ctrl-C stops")

    def ready(bound: int) -> None:
        render.line(f"listening on {scheme}://{host}:{bound}")

    try:
        asyncio.run(serve_forever(sim, host=host, port=port, ssl_context=context, ready=ready))
    except KeyboardInterrupt:
        render.line("stopped")
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
