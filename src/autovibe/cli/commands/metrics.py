"""``autovibe metrics``: the Prometheus exposition, as the hub serves it at ``/metrics`` (with ``--hub``:
the hub's own, with its API, job and PVE request metrics).

Per-project usage and quota gauges and enforcement levels come from the store; machine counts by state
from one cluster read; operations by kind and outcome from the journal; the PVE request latency
histogram and error counter cover the requests this command makes (the hub's cover all of its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import load_cli_settings, run

if TYPE_CHECKING:
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command()
def metrics(
    ctx: typer.Context,
    process: Annotated[
        bool, typer.Option("--process", help="Also include this process's CPU, memory and file metrics.")
    ] = False,
) -> None:
    """Print the Prometheus text exposition (format 0.0.4) of autovibe's metrics."""
    settings = load_cli_settings(ctx)
    if settings.hub_url:  # the hub's own /metrics (its token needs a global role)
        from autovibe.cli import remote_usage

        render.raw(remote_usage.metrics_text(settings, include_process=process))
        return
    render.raw(run(_exposition(settings, include_process=process)).decode())


async def _exposition(settings: Settings, *, include_process: bool) -> bytes:
    from autovibe.composition import open_machines
    from autovibe.usage import service
    from autovibe.usage.metrics import DomainCollector, PveRequestMetrics, exposition, new_registry

    registry = new_registry(include_process=include_process)
    requests = PveRequestMetrics(registry)
    async with open_machines(settings, metered=True) as deps:
        deps.pve.observer = requests.observe
        projects, machines, operations = await service.metric_figures(deps)
    DomainCollector(registry).update(projects=projects, machines=machines, operations=operations)
    return exposition(registry)
