"""``autovibe doctor``: can autovibe reach, trust, log in to and use the configured PVE?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run

if TYPE_CHECKING:
    from autovibe.cluster.models import DoctorReport
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command()
def doctor(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print stable JSON instead of a checklist.")
    ] = False,
) -> None:
    """Check reachability, TLS trust, authentication, node clocks and the privileges autovibe needs.

    Exits 1 when any check fails; each failure comes with a hint saying what to change.
    """
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    target = describe_target(settings)
    if not json_output:
        render.header(target)
    report = run(_diagnose(settings))
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "ok": report.ok,
                **report.model_dump(mode="json"),
            }
        )
    else:
        render.checks(
            [render.CheckLine(check.status, check.name, check.detail, check.hint) for check in report.checks]
        )
        render.line(
            "all checks passed" if report.ok else "some checks failed", style="green" if report.ok else "red"
        )
    if not report.ok:
        raise typer.Exit(1)


async def _diagnose(settings: Settings) -> DoctorReport:
    from autovibe.cluster import service as cluster_service
    from autovibe.composition import open_connection

    async with open_connection(settings) as connection:
        return await cluster_service.run_doctor(
            pve=connection.pve,
            tls_mode=connection.tls_mode,
            clock=connection.clock,
            authid=connection.authid,
        )
