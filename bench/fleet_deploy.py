"""How close does ``fleet.deploy`` get to the fastest deploy PVE's task model allows, and how much faster is
it than a proxmoxer script that deploys one machine after another?

For each N it deploys N ``claude_code`` machines (full clones of template 9000, started) on the three
simulated nodes, against the simulator served over real HTTP on 127.0.0.1 with its clock running
``--speed`` times faster than real time. Every run gets a fresh simulated cluster and a fresh SQLite
store; the naive baseline runs in the same process, against its own fresh cluster::

    python bench/fleet_deploy.py                          # N = 10, 50, 100 at 20x (about 6 minutes)
    python bench/fleet_deploy.py --n 50 --json
    python bench/fleet_deploy.py --skip-naive-above 10    # naive N > 10 extrapolated (it is serial)

Printed per N: autovibe's wall time (simulated and real seconds), the PVE API requests it made, the
*ideal makespan* (the lower bound no orchestrator can beat, computed from the simulator's own resource
model: see :func:`ideal_makespan` and bench/README.md), ``ratio`` = wall / ideal, the naive script's
wall time and ``speedup`` = naive / autovibe. Every figure comes from the same run. ``--json`` prints one
object per N with exactly the keys n, wall_s, ideal_s, ratio, requests, naive_wall_s, speedup; the
``*_s`` values there are real seconds at the chosen speed (simulated seconds = real x speed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from autovibe.cli.commands import configure_logging
from autovibe.machines import fleet
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.machines.profiles import SEED_PROFILES, Profile
from autovibe.machines.scheduler import DEFAULT_LIMITS, TaskGate, TaskLimits
from autovibe.pve import DEFAULT_POLL, PollPolicy, PveClient, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.sim.server import BackgroundServer
from autovibe.sim.tasks import COPY_STREAM_LIMIT
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Project

PROFILE = "claude_code"
PROJECT = "bench"
NODES = 3
MIB = 1024**2
GIB = 1024**3
# Placement refuses to overcommit memory and the default nodes (64 GiB) hold 45 machines of 4 GiB;
# memory is not part of the task model, so roomier nodes change nothing in the ideal.
NODE_MEMORY = 512 * GIB

# Fixed phases of the simulator's task model (docs/simulator.md, "Time and the task resource model").
CLONE_WAIT_S = 1.0  # qmclone: wait 1 s, then a copy of each disk's allocated bytes
RESIZE_S = 1.0  # resize: wait 1 s (only when the profile's disk is larger than the template's)
START_S = 3.0  # qmstart: wait 3 s
# PUT .../config is synchronous in PVE and in the simulator: no task, no simulated time.

# Lets in-flight server connections see the clients' goodbye before the server stops (otherwise
# Python 3.11's asyncio logs the cancelled connection handlers as "Exception in callback").
_SERVER_DRAIN_S = 0.2

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CountingApp:
    """ASGI middleware: counts the PVE API requests (``/api2/json/...``) that reach the simulator."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith("/api2/json"):
            with self._lock:
                self.requests += 1
        await self.app(scope, receive, send)


def new_sim(speed: float) -> SimApp:
    """A fresh in-memory three-node cluster with room for the largest fleet."""
    sim = SimApp.open(None, speed=speed, nodes=NODES)
    for node in sim.cluster.nodes.values():
        node.memory = NODE_MEMORY
    return sim


# ---- the ideal makespan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ideal:
    """The lower bound for N deploys in simulated seconds, and the figures it is made of."""

    n: int
    wait_s: float  # before any copy: the clone's wait phase
    copy_mib: float  # allocated bytes one clone copies
    stream_mib_s: float  # one copy's stream limit
    location: str  # the busiest storage location
    copies: int  # copies through it
    bandwidth_mib_s: float  # its bandwidth
    tail_s: float  # after the copy: resize (if the disk grows) + start

    @property
    def chain_s(self) -> float:
        """One machine alone."""
        return self.wait_s + self.copy_mib / self.stream_mib_s + self.tail_s

    @property
    def shared_s(self) -> float:
        """All copies through the busiest location at its full bandwidth."""
        return self.wait_s + self.copies * self.copy_mib / self.bandwidth_mib_s + self.tail_s

    @property
    def seconds(self) -> float:
        return max(self.chain_s, self.shared_s)

    def formula(self) -> str:
        return (
            f"{self.wait_s:g} s clone wait + max({self.copy_mib:.0f} MiB / {self.stream_mib_s:.0f} MiB/s, "
            f"N x {self.copy_mib:.0f} MiB / {self.bandwidth_mib_s:.0f} MiB/s of '{self.location}') "
            f"+ {self.tail_s:g} s start"
        )


def ideal_makespan(sim: SimApp, profile: Profile, n: int) -> Ideal:
    """The makespan of the best possible schedule of N deploys, from the simulator's own model.

    Every machine is the serial chain clone (wait ``a`` = 1 s, then a copy of the template's allocated
    bytes ``B``) -> config (synchronous, 0 s) -> resize (1 s, only if the disk grows) -> start (3 s);
    call what follows the copy the tail ``c``. A copy runs at min(stream limit ``S`` = 200 MiB/s, each
    location's bandwidth / copies sharing it). Hence, whatever the orchestrator does:

    - one chain takes at least ``a + B/S + c`` (no copy beats the stream limit);
    - no copy starts before ``a``; the ``N_L`` copies through a location ``L`` need ``N_L * B / W_L``
      seconds of its bandwidth ``W_L``; the copy that ends last still has its tail: ``a + N_L*B/W_L + c``.

    The larger of the two is also reached, by starting every clone at t=0 (equal shares: all copies end
    together and every start follows at once), so it is the ideal and not only a bound when all copies
    go through one location, as here (template and clones on the cluster-wide ``shared`` storage).
    Per-node worker limits are not part of the simulator's model, so they are not part of the ideal.
    """
    cluster = sim.cluster
    template = cluster.guests[profile.template_vmid]
    disks = [cluster.volumes[volid] for volid in template.disks().values() if volid in cluster.volumes]
    copy_bytes = float(sum(volume.used for volume in disks))
    per_location: dict[str, int] = {}  # location -> copies through it (one per machine and disk)
    for volume in disks:
        target = cluster.storages[profile.storage or volume.storage]
        # A node-local target is one location per node: some node gets at least ceil(N / nodes) copies.
        sharing = n if target.shared else -(-n // len(cluster.nodes))
        source = cluster.storages[volume.storage].location(volume.node)
        for location, count in ((source, n), (target.location(volume.node), sharing)):
            per_location[location] = max(per_location.get(location, 0), count)
    location, copies = max(
        per_location.items(), key=lambda item: item[1] / cluster.location_bandwidth(item[0])
    )
    grows = any(profile.disk_gib * GIB > volume.size for volume in disks)
    return Ideal(
        n=n,
        wait_s=CLONE_WAIT_S,
        copy_mib=copy_bytes / MIB,
        stream_mib_s=COPY_STREAM_LIMIT / MIB,
        location=location,
        copies=copies,
        bandwidth_mib_s=cluster.location_bandwidth(location) / MIB,
        tail_s=(RESIZE_S if grows else 0.0) + START_S,
    )


# ---- autovibe ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    n: int
    wall_s: float  # real seconds
    sim_s: float  # simulated seconds, read from the simulator's clock
    requests: int


def scaled_poll(policy: PollPolicy, speed: float) -> PollPolicy:
    """``policy`` on the simulated clock: the same delays in simulated seconds, i.e. real ones / speed."""
    return PollPolicy(initial=policy.initial / speed, factor=policy.factor, maximum=policy.maximum / speed)


def run_autovibe(n: int, speed: float, gate: TaskGate, workdir: Path) -> Run:
    """``fleet.deploy`` of N machines, wired as the CLI wires it (PveClient over HTTP, SQLite store)."""
    sim = new_sim(speed)
    token = sim.ensure_token()
    counter = CountingApp(sim)
    db = Database.open(sqlite_url(workdir / f"autovibe-{n}-{time.monotonic_ns()}.db"))
    with db.session() as session:
        session.add(Project(name=PROJECT, description="fleet deploy benchmark"))
    request = parse_request(
        MachineCreate, {"name": "agent", "profile": PROFILE, "project": PROJECT, "count": n}
    )
    try:
        with BackgroundServer(counter) as server:
            run = asyncio.run(_deploy(server.url, token, db, request, gate, sim, counter))
            time.sleep(_SERVER_DRAIN_S)
            return run
    finally:
        db.dispose()


async def _deploy(
    url: str,
    token: str,
    db: Database,
    request: MachineCreate,
    gate: TaskGate,
    sim: SimApp,
    counter: CountingApp,
) -> Run:
    async with PveClient(url, auth=TokenAuth(token)) as pve:
        deps = MachineDeps(pve=pve, db=db, gate=gate)
        await pve.version()  # connect outside the measurement, as the naive run does
        before = counter.requests
        sim_start, started = sim.clock.now(), time.perf_counter()
        result = await fleet.deploy(deps, request, dict(SEED_PROFILES), actor="bench")
        wall, sim_end = time.perf_counter() - started, sim.clock.now()
    failed = [o for o in result.outcomes if o.status != "deployed"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {request.count} deploys failed; first: {failed[0].error}")
    return Run(request.count, wall, sim_end - sim_start, counter.requests - before)


# ---- the naive baseline -----------------------------------------------------------------------------


def run_naive(n: int, speed: float, poll_s: float) -> Run:
    """One machine after another, the way a proxmoxer script does it: nextid, clone, wait, read the
    config, configure, resize (if the disk grows), start, wait. Waiting is proxmoxer's own
    ``Tasks.blocking_status``, polling every ``poll_s`` real seconds (its default is 1 s)."""
    sim = new_sim(speed)
    user_token, _, secret = sim.ensure_token().partition("=")
    user, _, token_name = user_token.partition("!")
    counter = CountingApp(sim)
    profile = SEED_PROFILES[PROFILE]
    with BackgroundServer(counter) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        prox: Any = ProxmoxAPI(host, port=int(port), user=user, token_name=token_name, token_value=secret)
        # proxmoxer always builds an https:// URL; the simulator is served over plain HTTP here.
        prox._store["base_url"] = f"{server.url}/api2/json"
        try:
            prox.version.get()  # connect outside the measurement
            resources = prox.cluster.resources.get(type="vm")
            template_node = next(str(r["node"]) for r in resources if r["vmid"] == profile.template_vmid)
            nodes = sorted(str(r["node"]) for r in prox.nodes.get())
            before = counter.requests
            sim_start, started = sim.clock.now(), time.perf_counter()
            for index in range(n):
                _naive_one(prox, profile, template_node, nodes[index % len(nodes)], index, poll_s)
            wall, sim_end = time.perf_counter() - started, sim.clock.now()
        finally:
            prox._store["session"].close()
        time.sleep(_SERVER_DRAIN_S)
        return Run(n, wall, sim_end - sim_start, counter.requests - before)


def _naive_one(prox: Any, profile: Profile, template_node: str, node: str, index: int, poll_s: float) -> None:
    def wait(upid: str) -> None:
        status = Tasks.blocking_status(prox, upid, timeout=3600, polling_interval=poll_s)
        if status is None or status.get("exitstatus") != "OK":
            raise RuntimeError(f"task {upid} did not succeed: {status}")

    vmid = int(prox.cluster.nextid.get())
    clone: dict[str, Any] = {"newid": vmid, "name": f"naive-{index + 1}", "full": 1}
    if node != template_node:
        clone["target"] = node
    wait(prox.nodes(template_node).qemu(profile.template_vmid).clone.post(**clone))
    vm = prox.nodes(node).qemu(vmid)
    config = vm.config.get()
    net0 = [part for part in str(config["net0"]).split(",") if not part.startswith("firewall=")]
    vm.config.put(
        cores=profile.cores,
        memory=profile.memory_mib,
        tags=";".join(profile.tags) or None,
        net0=",".join([*net0, "firewall=1"]),
    )
    size = str(config["scsi0"]).rsplit("size=", 1)[-1]
    if size.endswith("G") and profile.disk_gib > float(size[:-1]):
        wait(vm.resize.put(disk="scsi0", size=f"{profile.disk_gib}G"))
    wait(vm.status.start.post())


# ---- one row per N ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    n: int
    speed: float
    run: Run  # the median autovibe run
    runs: tuple[Run, ...]
    ideal: Ideal
    naive: Run | None  # the naive run measured for this N, or the one extrapolated from
    extrapolated: bool

    @property
    def ratio(self) -> float:
        return self.run.sim_s / self.ideal.seconds

    @property
    def naive_sim_s(self) -> float | None:
        return None if self.naive is None else self.naive.sim_s / self.naive.n * self.n

    @property
    def naive_wall_s(self) -> float | None:
        return None if self.naive is None else self.naive.wall_s / self.naive.n * self.n

    @property
    def speedup(self) -> float | None:
        naive = self.naive_wall_s
        return None if naive is None else naive / self.run.wall_s

    @property
    def serial_s(self) -> float:
        """A one-after-another script with no polling delay at all: the naive approach's best case."""
        return self.n * self.ideal.chain_s

    def as_json(self) -> dict[str, Any]:
        naive, speedup = self.naive_wall_s, self.speedup
        return {
            "n": self.n,
            "wall_s": round(self.run.wall_s, 3),
            "ideal_s": round(self.ideal.seconds / self.speed, 3),
            "ratio": round(self.ratio, 3),
            "requests": self.run.requests,
            "naive_wall_s": None if naive is None else round(naive, 3),
            "speedup": None if speedup is None else round(speedup, 2),
        }


class Bench:
    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.speed = float(options.speed)
        self.workdir = workdir
        self.naive_sample: Run | None = None  # the largest naive run so far

    def gate(self) -> TaskGate:
        poll = DEFAULT_POLL if self.options.real_poll else scaled_poll(DEFAULT_POLL, self.speed)
        limits = TaskLimits(per_node=self.options.per_node, per_template=self.options.per_template)
        return TaskGate(limits=limits, poll=poll)

    def row(self, n: int) -> Row:
        runs = tuple(
            run_autovibe(n, self.speed, self.gate(), self.workdir) for _ in range(self.options.repeat)
        )
        median = sorted(runs, key=lambda r: r.sim_s)[len(runs) // 2]
        ideal = ideal_makespan(new_sim(0), SEED_PROFILES[PROFILE], n)
        naive, extrapolated = self.naive_for(n)
        return Row(n, self.speed, median, runs, ideal, naive, extrapolated)

    def naive_for(self, n: int) -> tuple[Run | None, bool]:
        limit = self.options.skip_naive_above
        if n <= limit:
            run = self.measure_naive(n)
            return run, False
        if limit < 1:
            return None, False
        sample = self.naive_sample
        if sample is None or sample.n < limit:
            sample = self.measure_naive(limit)
        return sample, True

    def measure_naive(self, n: int) -> Run:
        poll = (
            self.options.naive_poll / self.speed if self.options.naive_poll_sim else self.options.naive_poll
        )
        run = run_naive(n, self.speed, poll)
        if self.naive_sample is None or run.n >= self.naive_sample.n:
            self.naive_sample = run
        return run


# ---- output -----------------------------------------------------------------------------------------


def _f(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_table(rows: list[Row], options: argparse.Namespace) -> None:
    speed = float(options.speed)
    poll = "in real s" if options.real_poll else "on the simulated clock"
    unit = "simulated" if options.naive_poll_sim else "real"
    runs = f"median of {options.repeat} runs" if options.repeat > 1 else "1 run"
    print(
        f"fleet deploy: N x {PROFILE} (full clone of template, started) on {NODES} nodes; "
        f"simulator over HTTP at {speed:g}x"
    )
    print(
        f"autovibe: fleet.deploy, TaskLimits(per_node={options.per_node}, "
        f"per_template={options.per_template}), default PollPolicy {poll}; {runs}"
    )
    print(
        f"naive:    proxmoxer, one machine after another, Tasks.blocking_status every "
        f"{options.naive_poll:g} s ({unit})"
    )
    print(f"times in simulated seconds, real seconds in brackets (real = simulated / {speed:g})")
    print()
    print(
        f"{'N':>4} {'autovibe':>15} {'ideal':>6} {'ratio':>6} {'requests':>8} {'req/VM':>6} "
        f"{'naive':>17} {'speedup':>8} {'serial':>7} {'vs serial':>9}"
    )
    for row in rows:
        mark = "*" if row.extrapolated else " "
        naive = f"{_f(row.naive_sim_s, '.0f')} ({_f(row.naive_wall_s, '.1f')}){mark}"
        spread = "" if len(row.runs) < 2 else f"  runs: {', '.join(f'{r.sim_s:.0f}' for r in row.runs)}"
        print(
            f"{row.n:>4} {row.run.sim_s:>7.1f} ({row.run.wall_s:>5.2f}) {row.ideal.seconds:>6.1f} "
            f"{row.ratio:>6.2f} {row.run.requests:>8} {row.run.requests / row.n:>6.1f} {naive:>17} "
            f"{_f(row.speedup, '>7.1f', 'x')} {row.serial_s:>7.0f} "
            f"{row.serial_s / row.run.sim_s:>8.1f}x{spread}"
        )
    print()
    if rows:
        ideal = rows[0].ideal
        print(f"ideal     = {ideal.formula()}")
        print(f"serial    = N x {ideal.chain_s:.2f} s: one machine after another with no polling delay")
        print("vs serial = serial / autovibe: the speed-up over the best any one-at-a-time script can do")
    for row in rows:
        if row.extrapolated and row.naive is not None:
            print(f"*         = N={row.n}: N x the per-machine time of a measured naive run of {row.naive.n}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--n",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[10, 50, 100],
        help="fleet sizes, comma-separated (default 10,50,100)",
    )
    parser.add_argument(
        "--speed", type=float, default=5.0, help="simulated seconds per real second (default 5)"
    )
    parser.add_argument(
        "--skip-naive-above",
        type=int,
        default=50,
        metavar="N",
        help="run the naive script for N up to this; larger N are extrapolated from a run of this size "
        "(default 50; 0 skips the baseline)",
    )
    parser.add_argument(
        "--naive-poll",
        type=float,
        default=1.0,
        help="naive task poll interval, real s (proxmoxer's default: 1)",
    )
    parser.add_argument(
        "--naive-poll-sim",
        action="store_true",
        help="read --naive-poll as simulated seconds (real = value / speed)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="autovibe runs per N; the median is reported (3)"
    )
    parser.add_argument("--per-node", type=int, default=DEFAULT_LIMITS.per_node, help="TaskLimits.per_node")
    parser.add_argument(
        "--per-template", type=int, default=DEFAULT_LIMITS.per_template, help="TaskLimits.per_template"
    )
    parser.add_argument(
        "--real-poll",
        action="store_true",
        help="autovibe polls with DEFAULT_POLL in real seconds (default: the same delays, simulated)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per N")
    options = parser.parse_args(argv)
    if options.speed <= 0:
        parser.error("--speed must be > 0")
    if options.repeat < 1 or min(options.n) < 1:
        parser.error("--repeat and every --n must be at least 1")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    configure_logging(
        "warning"
    )  # as the CLI does; per-request debug lines would cost time and pollute stdout
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="autovibe-bench-") as tmp:
        bench = Bench(options, Path(tmp))
        for n in sorted(set(options.n)):  # smallest first: a large naive run can be extrapolated
            rows.append(bench.row(n))
            print(f"N={n}: done", file=sys.stderr)
    if options.json:
        for row in rows:
            print(json.dumps(row.as_json()))
            if row.extrapolated and row.naive is not None:
                print(
                    f"N={row.n}: naive_wall_s extrapolated from a naive run of {row.naive.n}", file=sys.stderr
                )
    else:
        print_table(rows, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
