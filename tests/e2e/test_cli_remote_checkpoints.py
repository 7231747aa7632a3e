"""Checkpoint, retention policy and schedule commands through a remote hub (``--hub URL``).

A real ``autovibe serve`` runs on its own data dir (``hub_server.remote_site``); the commands under test run
from an EMPTY home with only ``--hub`` and ``AUTOVIBE_TOKEN``. Their output is compared with the local
command's on the hub host for the same state: the same lines and JSON, but for the target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from tests.e2e.hub_server import RemoteSite, cli, parallel, remote_site, token_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSite]:
    """The hub with an admin (alice) and a viewer of alpha (vera), and two machines deployed through it:
    ``web`` and ``ret`` (with checkpoints r1 and r2)."""
    tmp = tmp_path_factory.mktemp("remote-checkpoints")
    with remote_site(tmp, also=[("user", "add", "vera")]) as site, ThreadPoolExecutor(max_workers=3) as pool:
        host = site.host
        viewer = pool.submit(token_of, host, "vera")
        bound = pool.submit(cli, host, "role", "bind", "vera", "viewer", "--project", "alpha")

        def ret() -> None:
            site.ok("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "ret")
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
        yield replace(site, tokens={**site.tokens, "vera": viewer.result()})


def _without_target(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("target:"))


def _same_json(remote: dict[str, Any], local: dict[str, Any], url: str) -> None:
    assert remote["target"] == f"hub {url}"
    assert {**remote, "target": None} == {**local, "target": None}


def test_checkpoints_through_the_hub(site: RemoteSite) -> None:
    made = site.json("checkpoint", "create", "web", "before", "--ram", "--description", "clean install")
    assert made["machine"] == "web" and made["operation_id"] and made["ram_skipped"] is False
    assert made["checkpoint"]["name"] == "before" and made["checkpoint"]["ram"] is True
    assert made["checkpoint"]["created_by"] == "alice"
    later = site.ok("checkpoint", "create", "web", "after", "--no-ram")
    assert "created checkpoint 'after' of 'web': disks and config only" in later
    assert re.search(r"^checkpoint 'after' of web \.\.\. done in", later, re.M), later  # the job's progress

    remote_tree, remote_json, local_tree, local_json, shown, viewer, unknown, unknown_local = parallel(
        (site.run, "checkpoint", "list", "web"),
        (site.json, "checkpoint", "list", "web"),
        (site.local, "checkpoint", "list", "web"),
        (site.local, "checkpoint", "list", "web", "--json"),
        (site.ok, "checkpoint", "show", "web", "before"),
        (site.user("vera").run, "checkpoint", "create", "web", "mine"),
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
    branched, pinned = parallel(
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


def test_retention_through_the_hub(site: RemoteSite) -> None:
    saved, scheduled, neither = parallel(
        (site.ok, "checkpoint", "policy", "set", "last1", "--keep-last", "1", "--description", "newest"),
        (site.json, "checkpoint", "schedule", "set", "ret", "--every", "30d", "--no-ram"),
        (site.run, "checkpoint", "policy", "attach", "last1"),
    )
    assert "policy 'last1'" in saved and "restic words: --keep-last 1" in saved
    assert scheduled["schedule"]["every_s"] == 30 * 86400 and scheduled["schedule"]["target"] == "ret"
    assert neither.returncode == 2 and "give exactly one of --project or --machine" in neither.stderr
    attached = site.ok("checkpoint", "policy", "attach", "last1", "--project", "alpha")
    assert attached.strip() == "policy 'last1' now applies to project 'alpha'"

    shown, schedules, plan, plan_local, human_plan = parallel(
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
    removed, detached = parallel(
        (site.ok, "checkpoint", "schedule", "remove", "ret"),
        (site.ok, "checkpoint", "policy", "detach", "--project", "alpha"),
    )
    assert removed.strip() == "removed the schedule of machine 'ret'"
    assert detached.strip() == "project 'alpha' has no policy of its own now"
    assert site.ok("checkpoint", "policy", "delete", "last1").strip() == "deleted policy 'last1'"
