"""``autovibe serve`` as a real subprocess on a free port, and the CLI around it: what an operator does
on a fresh hub host (provision a user and a token against its store) and what a remote user does (the
CLI from an empty home with only ``--hub`` and ``AUTOVIBE_TOKEN``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

_LISTENING = re.compile(r"listening on (https?://127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class LiveHub:
    url: str
    secret: str
    output: list[str]
    """Everything the hub printed so far (its log: tracebacks of 500s show up here)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def home_env(home: Path) -> dict[str, str]:
    """An environment whose home and XDG directories are all inside ``home``, with no AUTOVIBE_*
    setting from the outside: a user on another host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_DATA_HOME=str(home / "xdg-data"),
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        XDG_STATE_HOME=str(home / "xdg-state"),
    )
    return env


def remote_env(home: Path, token: str) -> dict[str, str]:
    """A remote user's CLI: an empty ``home`` and an API token (the hub's URL goes on the command line)."""
    return {**home_env(home), "AUTOVIBE_TOKEN": token}


def hub_env(tmp: Path) -> dict[str, str]:
    """The environment of a hub (and of the CLI acting on its store) kept entirely inside ``tmp``."""
    return {
        **home_env(tmp),
        "AUTOVIBE_DATA_DIR": str(tmp / "data"),
        "AUTOVIBE_SIM_STATE_PATH": str(tmp / "sim.json"),
        "AUTOVIBE_SIM_SPEED": "500",
        "AUTOVIBE_TOKEN_KEY_FILE": str(tmp / "token.key"),
        "AUTOVIBE_HUB__RATE_PER_S": "100000",
        "AUTOVIBE_HUB__RATE_BURST": "100000",
        "AUTOVIBE_HUB__JOB_POLL_S": "0.05",
        "AUTOVIBE_HUB__EVENTS_POLL_S": "0.05",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``autovibe ARGS`` as a subprocess, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "autovibe", *args],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )  # fmt: skip


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``autovibe ARGS`` and return its stdout (failing loudly with its output)."""
    done = run(env, *args)
    assert done.returncode == 0, f"autovibe {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def token_of(env: dict[str, str], user: str) -> str:
    """A new API token of ``user`` (made on the hub host); its secret."""
    return str(json.loads(cli(env, "token", "create", user, "--json"))["secret"])


def parallel(*calls: tuple[Any, ...]) -> list[Any]:
    """Run independent calls at once (each a tuple: function, *args); their results in order. Each CLI
    process costs about a second of CPU, so independent ones share the wall time."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(*call) for call in calls]
        return [future.result() for future in futures]


class HubProcess:
    """``autovibe serve --port 0`` started at once; :meth:`url` waits (reading its output, without
    sleeping) until it listens. Leaving the ``with`` block stops it. Start it, provision its store in
    parallel, then ask for the URL: the provisioning overlaps its start-up."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.log: list[str] = []
        self._url: str | None = None
        self._drain: threading.Thread | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autovibe", "serve", "--port", "0"],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def url(self) -> str:
        if self._url is None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line)
                match = _LISTENING.search(line)
                if match:
                    self._url = match.group(1)
                    break
            assert self._url is not None, "the hub did not start:\n" + "".join(self.log)
            # Keep reading, so a chatty log never blocks the hub on a full pipe.
            self._drain = threading.Thread(target=self.log.extend, args=(self.proc.stdout,), daemon=True)
            self._drain.start()
        return self._url

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate it (a no-op for one already gone) and close its output."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._drain is not None:
            self._drain.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def provision(env: dict[str, str], user: str = "alice", project: str = "alpha") -> str:
    """A global admin with a fresh API token, and a project; returns the token's secret."""
    cli(env, "user", "add", user)
    cli(env, "role", "bind", user, "admin")
    secret = token_of(env, user)
    cli(env, "project", "create", project)
    return secret


@contextmanager
def live_hub(tmp: Path) -> Iterator[LiveHub]:
    """A served hub with a global admin's token and the project ``alpha``; stopped on exit."""
    with remote_site(tmp) as site:
        yield LiveHub(url=site.url, secret=site.secret, output=site.log)


@dataclass(frozen=True)
class RemoteSite:
    """A served hub seen from two places: its host (``host``: the CLI on the hub's own store and
    simulator) and a remote user's CLI (an empty ``home``, ``--hub URL`` and an API token)."""

    url: str
    host: dict[str, str]
    home: Path
    log: list[str]
    """Everything the hub printed so far."""
    tokens: dict[str, str]
    """API token secrets by user name."""
    acting: str = "alice"
    """Whose token the remote CLI uses: a user of ``tokens``, or a token given as is."""

    def user(self, name_or_token: str) -> RemoteSite:
        """The same site, the remote CLI acting as another user (or with that token as is)."""
        return replace(self, acting=name_or_token)

    @property
    def secret(self) -> str:
        return self.tokens.get(self.acting, self.acting)

    def env(self, token: str | None = None) -> dict[str, str]:
        """The remote CLI's environment, with ``token`` instead of the acting user's ("": none at all)."""
        env = remote_env(self.home, self.secret if token is None else token)
        if token == "":
            del env["AUTOVIBE_TOKEN"]
        return env

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """``autovibe --hub URL ARGS`` from the remote home, whatever its exit code."""
        return run(self.env(token), "--hub", self.url, *args)

    def ok(self, *args: str, token: str | None = None) -> str:
        done = self.run(*args, token=token)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}\nhub log:\n{''.join(self.log)}"
        return done.stdout

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", token=token))

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The same command on the hub host, against the hub's store and cluster (the local admin)."""
        return run(self.host, *args)

    def local_json(self, *args: str) -> Any:
        return json.loads(cli(self.host, *args, "--json"))


def _admin_token(env: dict[str, str], name: str, *, add: bool) -> str:
    if add:
        cli(env, "user", "add", name)
    cli(env, "role", "bind", name, "admin")
    return token_of(env, name)


@contextmanager
def remote_site(
    tmp: Path,
    *,
    admins: Sequence[str] = ("alice",),
    extra_env: dict[str, str] | None = None,
    also: Sequence[tuple[str, ...]] = (),
) -> Iterator[RemoteSite]:
    """``autovibe serve`` on ``tmp`` with global ``admins`` (each with an API token), the project
    ``alpha`` and the hub-host commands ``also``, all provisioned while the hub starts; stopped on exit.
    The remote CLI acts as the first admin."""
    host = {**hub_env(tmp), **(extra_env or {})}
    cli(host, "user", "add", admins[0])  # first: it creates the store the hub then opens
    with HubProcess(host, tmp) as served, ThreadPoolExecutor(max_workers=4) as pool:
        tokens = {name: pool.submit(_admin_token, host, name, add=i > 0) for i, name in enumerate(admins)}
        setup = [pool.submit(cli, host, "project", "create", "alpha")]
        setup += [pool.submit(cli, host, *command) for command in also]
        url = served.url()
        for step in setup:
            step.result()
        home = tmp / "client"
        home.mkdir()
        secrets = {name: token.result() for name, token in tokens.items()}
        yield RemoteSite(url, host, home, served.log, secrets, acting=admins[0])
