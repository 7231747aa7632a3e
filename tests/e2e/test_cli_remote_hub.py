"""The CLI against a remote hub (``--hub URL``): the same commands and output, with nothing local used.

A real ``autovibe serve`` runs as a subprocess on its own data dir; the CLI provisions an admin and a
token against that store first (what an operator does on the hub host), then every command under test
runs from a DIFFERENT, empty home with only ``--hub`` and ``AUTOVIBE_TOKEN``: if anything were read from
or written to a local store or simulator, the machines and projects would not be there.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.hub_server import RemoteSite, home_env, parallel, remote_site, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSite]:
    with remote_site(tmp_path_factory.mktemp("remote-hub")) as site:
        yield site


def test_machine_lifecycle_through_the_hub(remote: RemoteSite) -> None:
    created, projects = parallel(
        (remote.run, "machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "web",
         "--count", "2"),
        (remote.ok, "project", "list"),
    )  # fmt: skip
    assert f"target: hub {remote.url}" in projects
    assert re.search(r"^alpha\b", projects, re.M), projects
    assert created.returncode == 0, created.stdout + created.stderr
    # Piped stdout: one plain line per machine the hub's SSE events reported done, then the outcomes.
    assert "web-1: deployed" in created.stdout and "web-2: deployed" in created.stdout
    assert "Deployed 2 of 2" in created.stdout and "2 deployed" in created.stdout

    listed = remote.json("machine", "list")
    assert listed["target"] == f"hub {remote.url}"
    assert {m["name"]: m["status"] for m in listed["machines"]} == {"web-1": "running", "web-2": "running"}
    assert {m["project"] for m in listed["machines"]} == {"alpha"}

    stopped, deleted, operations = parallel(
        (remote.ok, "machine", "stop", "web-1"),
        (remote.json, "machine", "delete", "web-2", "--yes"),
        (remote.json, "ops", "list", "--all"),
    )
    assert re.search(r"machine 'web-1' \(VM \d+ on \S+\) is stopped", stopped), stopped
    assert deleted["deleted"]["name"] == "web-2" and deleted["deleted"]["operation_id"]
    assert deleted["deleted"]["vmid"] == listed_vmid(listed, "web-2")
    deploys = [op for op in operations["operations"] if op["kind"] == "machine.deploy"]
    assert {op["params"]["name"] for op in deploys} == {"web-1", "web-2"}
    assert all(op["status"] == "completed" for op in deploys)

    shown, after, one, resumed, lease = parallel(
        (remote.ok, "machine", "show", "web-1"),
        (remote.json, "machine", "list"),
        (remote.json, "ops", "show", deploys[0]["id"][:8]),
        (remote.ok, "ops", "resume"),
        (remote.ok, "machine", "lease", "web-1", "--extend", "4h"),
    )
    assert re.search(r"the lease of 'web-1' now ends .* UTC \(\d+h( \d+m)? left\)", lease), lease
    assert re.search(r"^status\s+stopped$", shown, re.M) and re.search(
        r"^created\s+.* by alice$", shown, re.M
    )
    assert [m["name"] for m in after["machines"]] == ["web-1"]
    assert one["operation"]["id"] == deploys[0]["id"] and one["operation"]["steps"]
    assert "nothing to resume" in resumed

    # Nothing was kept locally: the client's home has no store and no simulator state.
    assert not list(remote.home.rglob("autovibe.db")) and not list(remote.home.rglob("sim*.json"))


def listed_vmid(listed: dict[str, Any], name: str) -> int:
    return int(next(m["vmid"] for m in listed["machines"] if m["name"] == name))


def test_projects_through_the_hub(remote: RemoteSite) -> None:
    created = remote.json("project", "create", "beta", "--description", "remote", "--label", "team=ml")
    assert created["project"]["name"] == "beta" and created["project"]["labels"] == {"team": "ml"}
    shown, again = parallel((remote.ok, "project", "show", "beta"), (remote.run, "project", "create", "beta"))
    assert re.search(r"^description\s+remote$", shown, re.M), shown
    assert again.returncode == 1 and "already exists" in again.stderr  # a conflict, as locally
    assert remote.json("project", "delete", "beta")["deleted"] == "beta"
    gone = remote.run("project", "show", "beta")
    assert gone.returncode == 4 and "no project 'beta'" in gone.stderr


def test_errors_have_the_local_exit_codes_and_messages(remote: RemoteSite) -> None:
    local_env = home_env(remote.home / "local")  # plain local use: its own embedded simulator
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    with ThreadPoolExecutor(max_workers=7) as pool:
        futures = {
            "remote": pool.submit(remote.run, "machine", "show", "nope"),
            "local": pool.submit(run, local_env, "machine", "show", "nope"),
            "bad_token": pool.submit(remote.run, "machine", "list", token="avt_bogus_notarealsecret"),
            "no_token": pool.submit(remote.run, "machine", "list", token=""),
            "no_project": pool.submit(
                remote.run, "machine", "create", "--profile", "claude_code", "--project", "nosuch"
            ),
            "no_profile": pool.submit(
                remote.run, "machine", "create", "--profile", "nosuch", "--project", "alpha"
            ),
            "unreachable": pool.submit(run, remote.env(), "--hub", unreachable, "project", "list"),
        }
        done = {key: future.result() for key, future in futures.items()}

    assert done["remote"].returncode == done["local"].returncode == 4
    assert done["remote"].stderr == done["local"].stderr  # the same line and hint
    assert "no machine 'nope'" in done["remote"].stderr

    assert done["bad_token"].returncode == 3, done["bad_token"].stderr
    assert (
        "authentication failed" in done["bad_token"].stderr and "AUTOVIBE_TOKEN" in done["bad_token"].stderr
    )
    assert "notarealsecret" not in done["bad_token"].stdout + done["bad_token"].stderr

    assert done["no_token"].returncode == 2
    assert "set AUTOVIBE_TOKEN to an API token (autovibe token create)" in done["no_token"].stderr

    # Refused before anything starts, with exit 2 and one line, as locally.
    assert done["no_project"].returncode == 2, done["no_project"].stderr
    assert "no project 'nosuch'" in done["no_project"].stderr
    assert done["no_profile"].returncode == 2, done["no_profile"].stderr
    assert "nosuch" in done["no_profile"].stderr

    assert done["unreachable"].returncode == 1
    assert f"cannot reach the hub at {unreachable}" in done["unreachable"].stderr


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
