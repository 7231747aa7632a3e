"""Checkpoint, retention policy and schedule commands through a remote hub (``--hub URL``).

A real ``autovibe serve`` runs on its own data dir (``hub_server.live_hub``); the commands under test run
from an EMPTY home with only ``--hub`` and ``AUTOVIBE_TOKEN``. Their output is compared with the local
command's on the hub host for the same state: the same lines and JSON, but for the target.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.hub_server import hub_env

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autovibe", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Site:
    """The hub (``local``: its host's CLI on the same store and simulator) and a remote user's CLI."""

    url: str
    secret: str
    viewer: str
    home: Path
    hub_host: dict[str, str]
    hub_log: list[str]

    def env(self, token: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
        env.update(
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "xdg-config"),
            XDG_DATA_HOME=str(self.home / "xdg-data"),
            XDG_CACHE_HOME=str(self.home / "xdg-cache"),
            XDG_STATE_HOME=str(self.home / "xdg-state"),
            AUTOVIBE_TOKEN=token,
        )
        return env

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run(self.env(self.secret if token is None else token), "--hub", self.url, *args)

    def as_viewer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*args, token=self.viewer)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}\nhub log:\n{''.join(self.hub_log)}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run({**self.hub_host, "NO_COLOR": "1"}, *args)


def _parallel(*calls: tuple[Any, ...]) -> list[Any]:
    """Independent CLI invocations at once (each a tuple: function, *args); their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(*call) for call in calls]
        return [future.result() for future in futures]


def _ok(env: dict[str, str], *args: str) -> str:
    done = _run(env, *args)
    assert done.returncode == 0, f"autovibe {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _secret(env: dict[str, str], user: str) -> str:
    return str(json.loads(_ok(env, "token", "create", user, "--json"))["secret"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The hub, provisioned on its host while it starts (an admin, a viewer of alpha, their tokens),
    and two machines deployed through it: ``web`` and ``ret`` (with checkpoints r1 and r2)."""
    tmp = tmp_path_factory.mktemp("remote-checkpoints")
    host = {**hub_env(tmp), "AUTOVIBE_HUB__EVENTS_POLL_S": "0.05"}
    _ok(host, "user", "add", "alice")  # first: it creates the store the hub then opens
    proc = subprocess.Popen(
        [sys.executable, "-m", "autovibe", "serve", "--port", "0"],
        env=host,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    drain: threading.Thread | None = None
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            provisioned = [
                pool.submit(_ok, host, "role", "bind", "alice", "admin"),
                pool.submit(_ok, host, "project", "create", "alpha"),
                pool.submit(_ok, host, "user", "add", "vera"),
            ]
            admin = pool.submit(_secret, host, "alice")
            assert proc.stdout is not None
            seen: list[str] = []
            url = None
            for line in proc.stdout:  # no sleeps: read until it says where it listens
                seen.append(line)
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if match:
                    url = match.group(1)
                    break
            assert url is not None, "the hub did not start:\n" + "".join(seen)
            drain = threading.Thread(target=seen.extend, args=(proc.stdout,), daemon=True)
            drain.start()  # keep reading, so a chatty log never blocks the hub on a full pipe
            for done in provisioned:
                done.result()
            home = tmp / "client"
            home.mkdir()
            site = Site(url, admin.result(), "", home, host, seen)
            viewer = pool.submit(_secret, host, "vera")
            bound = pool.submit(_ok, host, "role", "bind", "vera", "viewer", "--project", "alpha")

            def ret() -> None:
                site.ok(
                    "machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "ret"
                )
                for name in ("r1", "r2"):
                    site.ok("checkpoint", "create", "ret", name, "--no-ram")

            prepared = [
                pool.submit(site.ok, "machine", "create", "--profile", "claude_code", "--project", "alpha",
                            "--name", "web"),
                pool.submit(ret),
            ]  # fmt: skip
            bound.result()
            for done in prepared:
                done.result()
            yield replace(site, viewer=viewer.result())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _without_target(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("target:"))


def _same_json(remote: dict[str, Any], local: dict[str, Any], url: str) -> None:
    assert remote["target"] == f"hub {url}"
    assert {**remote, "target": None} == {**local, "target": None}


def test_checkpoints_through_the_hub(site: Site) -> None:
    made = site.json("checkpoint", "create", "web", "before", "--ram", "--description", "clean install")
    assert made["machine"] == "web" and made["operation_id"] and made["ram_skipped"] is False
    assert made["checkpoint"]["name"] == "before" and made["checkpoint"]["ram"] is True
    assert made["checkpoint"]["created_by"] == "alice"
    later = site.ok("checkpoint", "create", "web", "after", "--no-ram")
    assert "created checkpoint 'after' of 'web': disks and config only" in later
    assert re.search(r"^checkpoint 'after' of web \.\.\. done in", later, re.M), later  # the job's progress

    remote_tree, remote_json, local_tree, local_json, shown, viewer, unknown, unknown_local = _parallel(
        (site.run, "checkpoint", "list", "web"),
        (site.json, "checkpoint", "list", "web"),
        (site.local, "checkpoint", "list", "web"),
        (site.local, "checkpoint", "list", "web", "--json"),
        (site.ok, "checkpoint", "show", "web", "before"),
        (site.as_viewer, "checkpoint", "create", "web", "mine"),
        (site.run, "checkpoint", "list", "nope"),
        (site.local, "checkpoint", "list", "nope"),
    )
    assert remote_tree.returncode == local_tree.returncode == 0, remote_tree.stderr + local_tree.stderr
    assert f"target: hub {site.url}" in remote_tree.stdout
    assert _without_target(remote_tree.stdout) == _without_target(local_tree.stdout)
    assert "before · " in remote_tree.stdout and " · RAM · clean install" in remote_tree.stdout
    assert "● you are here (running)" in remote_tree.stdout
    _same_json(remote_json, json.loads(local_json.stdout), site.url)
    assert [n["name"] for n in remote_json["tree"]] == ["before"] and remote_json["here"] == "after"
    assert re.search(r"^saved\s+disks, config and RAM$", shown, re.M), shown
    assert viewer.returncode == 3, viewer.stderr
    assert unknown.returncode == unknown_local.returncode == 4
    assert unknown.stderr == unknown_local.stderr and "no machine 'nope'" in unknown.stderr

    restored = site.ok("checkpoint", "restore", "web", "before")
    assert "restored 'web' to checkpoint 'before': it is running" in restored
    branched, pinned = _parallel(
        (site.ok, "checkpoint", "branch", "web", "before", "--as", "web-b", "--no-start"),
        (site.json, "checkpoint", "pin", "web", "after"),
    )
    assert "branched 'web-b' from checkpoint 'before' of 'web'" in branched, branched
    assert re.search(r"^branch web at before into web-b \.\.\. done in", branched, re.M)
    assert re.search(r"^lineage\s+branched from web at before$", branched, re.M), branched
    assert re.search(r"^operation\s+[0-9a-f]{8}$", branched, re.M)
    assert pinned["machine"] == "web" and pinned["checkpoint"]["pinned"] is True

    refused = site.run("checkpoint", "delete", "web", "after")
    assert refused.returncode == 1  # the service's words and hint, as locally
    assert "checkpoint 'after' of machine 'web' is pinned" in refused.stderr
    assert "unpin it first: `autovibe checkpoint unpin web after`" in refused.stderr
    deleted = site.json("checkpoint", "delete", "web", "after", "--force")
    assert deleted["deleted"] == "after" and deleted["machine"] == "web" and deleted["operation_id"]
    after = site.json("checkpoint", "list", "web")
    assert [c["name"] for c in after["tree"]] == ["before"]
    assert after["tree"][0]["branches"] == ["web-b"]
    assert not list(site.home.rglob("*.db")) and not list(site.home.rglob("sim*.json"))


def test_retention_through_the_hub(site: Site) -> None:
    saved, scheduled, neither = _parallel(
        (site.ok, "checkpoint", "policy", "set", "last1", "--keep-last", "1", "--description", "newest"),
        (site.json, "checkpoint", "schedule", "set", "ret", "--every", "30d", "--no-ram"),
        (site.run, "checkpoint", "policy", "attach", "last1"),
    )
    assert "policy 'last1'" in saved and "restic words: --keep-last 1" in saved
    assert scheduled["schedule"]["every_s"] == 30 * 86400 and scheduled["schedule"]["target"] == "ret"
    assert neither.returncode == 2 and "give exactly one of --project or --machine" in neither.stderr
    attached = site.ok("checkpoint", "policy", "attach", "last1", "--project", "alpha")
    assert attached.strip() == "policy 'last1' now applies to project 'alpha'"

    shown, schedules, plan, plan_local, human_plan = _parallel(
        (site.json, "checkpoint", "policy", "show", "last1"),
        (site.ok, "checkpoint", "schedule", "list"),
        (site.json, "checkpoint", "prune", "ret", "--dry-run"),
        (site.local, "checkpoint", "prune", "ret", "--dry-run", "--json"),
        (site.ok, "checkpoint", "prune", "ret", "--dry-run"),
    )
    assert shown["policy"]["projects"] == ["alpha"] and shown["policy"]["description"] == "newest"
    assert re.search(r"^machine\s+ret\s+30d\s+no\s+yes\s+never\s+now$", schedules, re.M), schedules
    _same_json(plan, json.loads(plan_local.stdout), site.url)
    (machine,) = plan["machines"]
    assert {i["checkpoint"]: i["outcome"] for i in machine["items"]} == {"r1": "remove", "r2": "keep"}
    assert "1 checkpoint(s) would be removed, 1 kept" in human_plan

    pruned = site.ok("checkpoint", "prune", "ret")
    assert re.search(r"1 removed, 1 kept, 0 deferred .*, 0 failed; operation [0-9a-f]{8}", pruned), pruned
    removed, detached = _parallel(
        (site.ok, "checkpoint", "schedule", "remove", "ret"),
        (site.ok, "checkpoint", "policy", "detach", "--project", "alpha"),
    )
    assert removed.strip() == "removed the schedule of machine 'ret'"
    assert detached.strip() == "project 'alpha' has no policy of its own now"
    assert site.ok("checkpoint", "policy", "delete", "last1").strip() == "deleted policy 'last1'"
