"""How many ``GET /api/v1/machines`` a hub answers per second, and how fast, with 200 callers at once.

Starts a real hub (``python -m autovibe serve --port 0``, a subprocess on 127.0.0.1) on a fresh SQLite
store in a temporary directory with the embedded simulator, creates a project, a user bound to the
``operator`` role in it and an API token for that user (with the CLI, on the same data dir and token
key file), deploys N machines through the API (one fleet job), then runs C concurrent clients, each its
own ``httpx.AsyncClient`` with one keep-alive connection, that list the machines for D seconds (or R
requests in all). Reports requests/s, latency percentiles and errors by status::

    python bench/api_load.py                         # 20 machines, 200 clients, 10 s
    python bench/api_load.py --json --seconds 5      # one JSON object
    python bench/api_load.py --requests 20000        # stop after 20,000 requests instead
    python bench/api_load.py --rate-limited          # keep the default per-token rate limit (429s)

The rate limiter is raised out of the way unless ``--rate-limited``: every client uses the same token,
so at the defaults (50/s, bursts of 100) nearly every request would be a 429. Each client makes one
untimed request first (it opens its connection and checks the answer lists all N machines); the timed
phase starts for every client at once. Latency is measured in the client, from sending to the whole
body read, so it includes the load generator's own scheduling delay: on a small machine the generator
(one Python process) and the hub compete for the same CPUs, which the figures reflect.

``--json`` prints ``{"clients", "machines", "requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms",
"max_ms", "errors"}``: ``requests`` counts the timed requests (any answer, or a transport error),
``seconds`` runs from the start until the last answer (so a little past ``--seconds``: requests sent
before the end are waited for), ``errors`` maps an HTTP status other than 200 (or an exception's class
name) to its count.
Bounded whatever the flags: at most 1,000,000 timed requests and 300 s of load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
PROJECT = "bench"
USER = "loadbench"
MAX_REQUESTS = 1_000_000  # hard caps, whatever the flags say
MAX_SECONDS = 300.0
START_TIMEOUT_S = 60.0  # the hub migrates its store and opens the simulator before it listens
DEPLOY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 40.0  # uvicorn's graceful shutdown is 30 s
REQUEST_TIMEOUT_S = 30.0
LISTENING = re.compile(r"listening on (https?://\S+)")


class BenchError(RuntimeError):
    """The setup failed: the message says which step."""


@dataclass
class Load:
    """What the clients measured; shared by every client task (one event loop, no locks needed)."""

    budget: int  # timed requests left to hand out
    clients: int
    deadline: float = 0.0
    ready: int = 0  # clients that made their untimed request
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def ticket(self) -> bool:
        if self.budget <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.budget -= 1
        return True


def hub_env(tmp: Path, *, rate_limited: bool) -> dict[str, str]:
    """The environment of the hub and of the CLI calls: nothing of the caller's own autovibe setup."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTOVIBE_")}
    env.update(
        XDG_CONFIG_HOME=str(tmp / "config"),  # no ~/.config/autovibe/config.toml
        AUTOVIBE_DATA_DIR=str(tmp / "data"),
        AUTOVIBE_TOKEN_KEY_FILE=str(tmp / "token.key"),
        AUTOVIBE_LOG_LEVEL="warning",
        AUTOVIBE_SIM_SPEED="200",  # the fleet deploy is setup, not what is measured
        PYTHONUNBUFFERED="1",  # the "listening on" line must reach us at once
    )
    if not rate_limited:
        env.update(AUTOVIBE_HUB__RATE_PER_S="100000", AUTOVIBE_HUB__RATE_BURST="1000000")
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    """Run ``python -m autovibe ARGS`` and return its stdout (BenchError with its stderr on failure)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autovibe", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    if process.returncode != 0:
        raise BenchError(f"autovibe {' '.join(args[:2])} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def make_token(env: dict[str, str]) -> str:
    """A project, a user who operates it, and an API token for that user (secret returned, not shown)."""
    await cli(env, "project", "create", PROJECT)
    await cli(env, "user", "add", USER)
    await cli(env, "role", "bind", USER, "operator", "--project", PROJECT)
    out = await cli(env, "token", "create", USER, "--description", "api_load benchmark", "--json")
    secret = json.loads(out)["secret"]
    assert isinstance(secret, str) and secret.startswith("avt_")
    return secret


@contextlib.asynccontextmanager
async def running_hub(env: dict[str, str], log: Path) -> Any:
    """Start ``autovibe serve --port 0``, yield its base URL, and stop it (SIGTERM, then SIGKILL)."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autovibe", "serve", "--host", "127.0.0.1", "--port", "0",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        assert process.stdout is not None
        drain: asyncio.Task[None] | None = None
        try:
            url = await asyncio.wait_for(_listening(process.stdout), timeout=START_TIMEOUT_S)
            if url is None:
                raise BenchError(f"the hub exited before it listened:\n{_tail(log)}")
            drain = asyncio.create_task(_drain(process.stdout))  # a full pipe would block the hub
            yield url
        except TimeoutError:
            raise BenchError(f"the hub did not listen within {START_TIMEOUT_S:g} s:\n{_tail(log)}") from None
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain


def _tail(log: Path, size: int = 4000) -> str:
    """The end of the hub's log (it lives in the temporary directory, gone once the run ends)."""
    try:
        return log.read_bytes()[-size:].decode(errors="replace").strip() or "(its log is empty)"
    except OSError:
        return "(no log)"


async def _listening(stdout: asyncio.StreamReader) -> str | None:
    while line := await stdout.readline():
        if match := LISTENING.search(line.decode(errors="replace")):
            return match.group(1)
    return None


async def _drain(stdout: asyncio.StreamReader) -> None:
    while await stdout.read(65536):
        pass


async def deploy(url: str, token: str, machines: int) -> None:
    """Deploy the fleet through the API (202 + a job) and wait until the job ends and all are listed."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        body = {"name": "load", "profile": "claude_code", "project": PROJECT, "count": machines}
        accepted = await client.post(f"{API}/machines", json=body)
        if accepted.status_code != 202:
            raise BenchError(f"deploy refused: {accepted.status_code} {accepted.text}")
        job_url = accepted.json()["links"]["job"]
        deadline = time.perf_counter() + DEPLOY_TIMEOUT_S
        while True:
            job = (await client.get(job_url)).json()
            if job["status"] in ("succeeded", "failed"):
                break
            if time.perf_counter() > deadline:
                raise BenchError(f"the deploy job did not end within {DEPLOY_TIMEOUT_S:g} s")
            await asyncio.sleep(0.25)
        if job["status"] != "succeeded":
            raise BenchError(f"the deploy job failed: {job.get('error')}")
        listed = (await client.get(f"{API}/machines")).json()
        if len(listed) != machines:
            raise BenchError(f"expected {machines} machines listed, got {len(listed)}")


async def client_loop(url: str, token: str, machines: int, load: Load, go: asyncio.Event) -> None:
    """One caller: its own client and connection; one untimed, checked request, then timed ones."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as client:
        first = await client.get(f"{API}/machines")
        if first.status_code == 200 and len(first.json()) != machines:
            raise BenchError(f"a client saw {len(first.json())} machines instead of {machines}")
        load.ready += 1
        if load.ready == load.clients:
            load.all_ready.set()
        await go.wait()
        while load.ticket():
            started = time.perf_counter()
            try:
                response = await client.get(f"{API}/machines")
            except httpx.HTTPError as exc:
                load.errors[type(exc).__name__] += 1
                continue
            load.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                load.errors[str(response.status_code)] += 1


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..100) of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="autovibe-load-") as name:
        tmp = Path(name)
        env = hub_env(tmp, rate_limited=args.rate_limited)
        token = await make_token(env)
        async with running_hub(env, tmp / "hub.log") as url:
            await deploy(url, token, args.machines)
            load = Load(budget=min(args.requests or MAX_REQUESTS, MAX_REQUESTS), clients=args.clients)
            go = asyncio.Event()
            clients = [
                asyncio.create_task(client_loop(url, token, args.machines, load, go))
                for _ in range(args.clients)
            ]
            try:
                ready = asyncio.create_task(load.all_ready.wait())
                await asyncio.wait([ready, *clients], return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                for task in clients:
                    if task.done():
                        task.result()  # a client failed before the start: raise its error
                started = time.perf_counter()
                load.deadline = started + min(args.seconds, MAX_SECONDS)
                go.set()
                await asyncio.gather(*clients)
                elapsed = time.perf_counter() - started
            finally:
                for task in clients:
                    task.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
    latencies = sorted(load.latencies)
    total = len(latencies) + sum(v for k, v in load.errors.items() if not k.isdigit())

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    return {
        "clients": args.clients,
        "machines": args.machines,
        "requests": total,
        "seconds": round(elapsed, 3),
        "rps": round(total / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(latencies[-1]) if latencies else math.nan,
        "errors": dict(sorted(load.errors.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=20, help="machines to deploy first (default 20)")
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration (default 10, max 300)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    parser.add_argument("--rate-limited", action="store_true", help="keep the default per-token rate limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.machines <= 45:
        parser.error("--machines must be 1..45 (the simulated nodes hold 45 claude_code machines)")
    if not 1 <= args.clients <= 1000:
        parser.error("--clients must be 1..1000")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    if args.requests is not None and not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS:,}")
    try:
        result = asyncio.run(run(args))
    except BenchError as exc:
        print(f"api_load: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"clients:   {result['clients']} (one connection each), {result['machines']} machines listed")
    print(f"requests:  {result['requests']:,} in {result['seconds']:.1f} s = {result['rps']:,.0f} requests/s")
    print(
        f"latency:   p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms"
    )
    print(f"errors:    {result['errors'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
