"""``autovibe serve`` as a real subprocess on a free port, with an admin's API token made by the CLI
against the same store: what an operator does on a fresh install."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LiveHub:
    url: str
    secret: str
    output: list[str]
    """Everything the hub printed so far (its log: tracebacks of 500s show up here)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def hub_env(tmp: Path) -> dict[str, str]:
    """The environment of a hub (and of the CLI acting on its store) kept entirely inside ``tmp``."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
        "XDG_DATA_HOME": str(tmp / "xdg-data"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "AUTOVIBE_DATA_DIR": str(tmp / "data"),
        "AUTOVIBE_SIM_STATE_PATH": str(tmp / "sim.json"),
        "AUTOVIBE_SIM_SPEED": "500",
        "AUTOVIBE_TOKEN_KEY_FILE": str(tmp / "token.key"),
        "AUTOVIBE_HUB__RATE_PER_S": "100000",
        "AUTOVIBE_HUB__RATE_BURST": "100000",
        "AUTOVIBE_HUB__JOB_POLL_S": "0.05",
    }


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``autovibe ARGS`` and return its stdout (failing loudly with its output)."""
    done = subprocess.run(
        [sys.executable, "-m", "autovibe", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"autovibe {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def provision(env: dict[str, str], user: str = "alice", project: str = "alpha") -> str:
    """A global admin with a fresh API token, and a project; returns the token's secret."""
    cli(env, "user", "add", user)
    cli(env, "role", "bind", user, "admin")
    secret: str = json.loads(cli(env, "token", "create", user, "--json"))["secret"]
    cli(env, "project", "create", project)
    return secret


@contextmanager
def live_hub(tmp: Path) -> Iterator[LiveHub]:
    """Provision the store, start ``autovibe serve --port 0`` and wait (reading its output, without
    sleeping) until it listens; stop it on exit."""
    env = hub_env(tmp)
    secret = provision(env)
    cmd = [sys.executable, "-m", "autovibe", "serve", "--port", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp
    )
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        url = None
        for line in proc.stdout:
            seen.append(line)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                url = match.group(1)
                break
        if url is None:
            proc.wait(timeout=10)
            raise AssertionError("the hub did not start:\n" + "".join(seen))
        # Keep draining its output, so a chatty log never fills the pipe and blocks the hub.
        drain = threading.Thread(target=seen.extend, args=(proc.stdout,), daemon=True)
        drain.start()
        yield LiveHub(url=url, secret=secret, output=seen)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stdout:
            proc.stdout.close()
