"""``autovibe cluster ...``: what the cluster looks like right now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.cluster.models import ClusterStatus
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of tables.")]


@app.callback()
def cluster(ctx: typer.Context) -> None:
    """Inspect the cluster autovibe talks to (the embedded simulator unless --pve-url is set)."""
    show_help_without_subcommand(ctx)


@app.command()
def status(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """PVE version, nodes, guests (templates included) and storage, from one cluster read."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    target = describe_target(settings)
    if not json_output:
        render.header(target)
    view = run(_read_status(settings))
    if json_output:
        render.emit_json({**json_envelope(settings), **view.model_dump(mode="json")})
        return
    show_status(view)


async def _read_status(settings: Settings) -> ClusterStatus:
    from autovibe.cluster import service as cluster_service
    from autovibe.composition import open_pve

    async with open_pve(settings) as pve:
        return await cluster_service.cluster_status(pve=pve)


def show_status(view: ClusterStatus, *, storages: bool = True) -> None:
    """Render the status view as tables (also used by the demo)."""
    render.line(f"Proxmox VE {view.version} (release {view.release})")
    render.table(nodes_table(view))
    render.table(guests_table(view))
    if storages:
        render.table(storage_table(view))


def nodes_table(view: ClusterStatus) -> render.Table:
    right: render.Justify = "right"
    return render.Table(
        title=f"Nodes ({len(view.nodes)})",
        columns=(
            render.Column("node"),
            render.Column("status"),
            render.Column("cpu", right),
            render.Column("cores", right),
            render.Column("memory", right),
            render.Column("uptime", right),
        ),
        rows=tuple(
            (
                node.name,
                node.status,
                render.percent(node.cpu),
                str(node.maxcpu),
                f"{render.human_bytes(node.mem)} / {render.human_bytes(node.maxmem)}",
                render.human_duration(node.uptime),
            )
            for node in view.nodes
        ),
    )


def guests_table(view: ClusterStatus) -> render.Table:
    right: render.Justify = "right"
    return render.Table(
        title=f"Guests ({len(view.guests)}, {len(view.templates)} templates)",
        columns=(
            render.Column("vmid", right),
            render.Column("name"),
            render.Column("node"),
            render.Column("status"),
            render.Column("cores", right),
            render.Column("memory", right),
            render.Column("disk", right),
            render.Column("tags"),
        ),
        rows=tuple(
            (
                str(guest.vmid),
                guest.name,
                guest.node,
                "template"
                if guest.template
                else guest.status + (f" (lock: {guest.lock})" if guest.lock else ""),
                str(guest.maxcpu),
                render.human_bytes(guest.maxmem),
                render.human_bytes(guest.maxdisk),
                ";".join(guest.tags),
            )
            for guest in view.guests
        ),
    )


def storage_table(view: ClusterStatus) -> render.Table:
    right: render.Justify = "right"
    return render.Table(
        title=f"Storage ({len(view.storages)} on {len(view.nodes)} nodes)",
        columns=(
            render.Column("storage"),
            render.Column("node"),
            render.Column("type"),
            render.Column("used", right),
            render.Column("size", right),
            render.Column("content"),
        ),
        rows=tuple(
            (
                storage.storage,
                storage.node,
                storage.plugin,
                render.human_bytes(storage.disk),
                render.human_bytes(storage.maxdisk),
                ",".join(storage.content),
            )
            for storage in view.storages
        ),
    )
