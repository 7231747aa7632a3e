"""What one ``hub tick`` usage pass costs over 1,000 simulated guests: PVE requests and autovibe's own time.

Builds a simulated cluster with N running guests (linked clones of template 9000, all managed by
autovibe in a fresh SQLite store, one project with a quota), then runs usage passes (sample, hourly
usage, limits, idle detection, quota enforcement) one simulated minute apart. The first pass also
measures storage (one content listing per storage instance) and creates every machine's usage
series; the figures reported are those of a steady pass, the median of ``--passes``.

``tick_s`` is autovibe's own time: the wall time of the pass minus the time spent inside the
in-process simulator answering it (measured around the ASGI app), so it does not depend on how fast
the simulator is. ``requests`` counts the PVE API requests of the pass::

    python bench/hub_tick.py                  # N = 1000
    python bench/hub_tick.py --n 200 --json   # {"guests": ..., "requests": ..., "tick_s": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from autovibe.cli.commands import configure_logging
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import load_profiles
from autovibe.machines.scheduler import TaskGate
from autovibe.pve import PollPolicy, PveClient, RequestObservation, TokenAuth
from autovibe.settings import UsageSettings
from autovibe.sim.app import SimApp
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Machine, Project
from autovibe.usage import quotas, service
from autovibe.usage.alerts import Dispatcher


class TimedApp:
    """The simulator's ASGI app, with the time spent inside it added up."""

    def __init__(self, app: SimApp) -> None:
        self.app = app
        self.inside = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inside += time.perf_counter() - started


async def build(sim: SimApp, pve: PveClient, db: Database, n: int) -> None:
    """N running linked clones of template 9000 spread over the nodes, recorded as machines."""
    nodes = ["pve1", "pve2", "pve3"]
    with db.session() as session:
        session.add(project := Project(name="bench", description="hub tick benchmark"))
        session.flush()
        project_id = project.id
    for index in range(n):
        vmid = 1000 + index
        node = nodes[index % len(nodes)]
        upid = await pve.post("/nodes/pve1/qemu/9000/clone", newid=vmid, name=f"g{index}", target=node)
        sim.clock.advance(30)
        await pve.wait_task(upid)
        await pve.wait_task(await pve.post(f"/nodes/{node}/qemu/{vmid}/status/start"))
    with db.session() as session:
        for index in range(n):
            session.add(
                Machine(name=f"g{index}", vmid=1000 + index, node=nodes[index % len(nodes)],
                        project_id=project_id, profile="claude_code", created_by="bench",
                        operation_id=f"bench-{index}")
            )  # fmt: skip
    quotas.set_quota(db, "bench", "cpu_core_hours", 1e9, "month")


async def run(n: int, passes: int) -> dict[str, float | int]:
    sim = SimApp.open(None, speed=0)
    timed = TimedApp(sim)
    seen: list[RequestObservation] = []

    async def sleep(seconds: float) -> None:
        sim.clock.advance(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(sqlite_url(Path(tmp) / "autovibe.db"))
        client = PveClient(
            "https://pve1:8006",
            auth=TokenAuth(sim.ensure_token()),
            transport=httpx.ASGITransport(app=timed),
            sleep=sleep,
            clock=sim.clock.now,
            observer=seen.append,
        )
        async with client:
            await build(sim, client, db, n)
            deps = MachineDeps(
                pve=client,
                db=db,
                gate=TaskGate(poll=PollPolicy(initial=1.0, maximum=1.0), sleep=sleep),
                now=lambda: datetime.fromtimestamp(sim.clock.now(), UTC),
            )
            config, profiles, dispatcher = UsageSettings(), load_profiles({}), Dispatcher([])
            own: list[float] = []
            requests: list[int] = []
            for index in range(passes + 1):
                seen.clear()
                timed.inside = 0.0
                started = time.perf_counter()
                report = await service.tick(deps, config, profiles, dispatcher, actor="bench")
                wall = time.perf_counter() - started
                assert report.sampled == n, report.sampled
                if index:  # the first pass also builds every series and measures storage
                    own.append(wall - timed.inside)
                    requests.append(len(seen))
                sim.clock.advance(60)
        db.dispose()
    return {"guests": n, "requests": max(requests), "tick_s": round(statistics.median(own), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="simulated guests (default 1000)")
    parser.add_argument("--passes", type=int, default=5, help="steady passes to time (default 5)")
    parser.add_argument("--json", action="store_true", help="print {guests, requests, tick_s}")
    args = parser.parse_args(argv)
    configure_logging("warning")  # no per-request debug lines in the timings
    result = asyncio.run(run(args.n, args.passes))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"guests:    {result['guests']:,}")
        print(f"requests:  {result['requests']} per usage pass (PVE API)")
        print(f"tick:      {result['tick_s'] * 1000:.0f} ms of autovibe's own time (target: under 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
