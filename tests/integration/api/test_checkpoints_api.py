"""Checkpoints and retention over HTTP: create, restore, branch and delete as jobs, the tree, pins,
policies, schedules and a dry-run prune, and the refusals that come before any job is queued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.settings import Settings
from tests.integration.api.conftest import API, ClientFor, hub_settings, run_job

ZFS = {"claude_code": {"storage": "local-zfs"}}


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The hub's settings; ``@pytest.mark.parametrize("settings", [PROFILES], indirect=True)`` gives it
    profile overrides (ZFS storage, say)."""
    profiles = getattr(request, "param", None)
    return hub_settings(tmp_path).model_copy(update={"profiles": profiles or {}})


async def _deploy(admin: httpx.AsyncClient, name: str = "m1", project: str = "alpha") -> None:
    job = await run_job(
        admin, "POST", "/machines", json={"name": name, "profile": "claude_code", "project": project}
    )
    assert job["status"] == "succeeded", job


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    """Every node name in the tree, depth first."""
    return [name for node in nodes for name in (node["name"], *_names(node["children"]))]


async def test_create_restore_branch_delete(admin: httpx.AsyncClient) -> None:
    await _deploy(admin)
    made = await run_job(
        admin, "POST", "/machines/m1/checkpoints", json={"name": "before", "description": "clean"}
    )
    assert made["status"] == "succeeded", made
    assert made["result"]["checkpoint"]["name"] == "before"
    assert made["result"]["checkpoint"]["ram"] is True  # the machine runs: its RAM is saved
    later = await run_job(admin, "POST", "/machines/m1/checkpoints", json={"name": "after", "ram": False})
    assert later["status"] == "succeeded", later

    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert [c["name"] for c in tree["checkpoints"]] == ["before", "after"]
    assert tree["here"] == "after"
    (root,) = tree["tree"]
    assert root["name"] == "before" and root["description"] == "clean"
    assert _names(tree["tree"]) == ["before", "after", "current"]
    assert root["children"][0]["children"][0]["current"] is True

    detail = await admin.get(f"{API}/machines/m1/checkpoints/before")
    assert detail.status_code == 200
    assert detail.json()["checkpoint"]["name"] == "before" and detail.json()["config"]

    restored = await run_job(admin, "POST", "/machines/m1/checkpoints/before/restore", json={})
    assert restored["status"] == "succeeded", restored
    assert restored["result"]["restored"] == "before" and restored["result"]["status"] == "running"
    assert (await admin.get(f"{API}/machines/m1/checkpoints")).json()["here"] == "before"

    branched = await run_job(
        admin, "POST", "/machines/m1/checkpoints/before/branch", json={"new_name": "m2", "start": False}
    )
    assert branched["status"] == "succeeded", branched
    assert branched["result"]["source"] == {"machine": "m1", "checkpoint": "before"}
    m2 = (await admin.get(f"{API}/machines/m2")).json()
    assert m2["parent_machine"] == "m1" and m2["status"] == "stopped"
    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert tree["checkpoints"][0]["branches"] == ["m2"]

    deleted = await run_job(admin, "DELETE", "/machines/m1/checkpoints/after")
    assert deleted["status"] == "succeeded", deleted
    assert deleted["result"]["deleted"] == "after"
    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert [c["name"] for c in tree["checkpoints"]] == ["before"]
    missing = await admin.get(f"{API}/machines/m1/checkpoints/after")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_pin_and_unpin(admin: httpx.AsyncClient) -> None:
    await _deploy(admin)
    assert (await run_job(admin, "POST", "/machines/m1/checkpoints", json={"name": "keep"}))["status"] == (
        "succeeded"
    )
    pinned = await admin.put(f"{API}/machines/m1/checkpoints/keep/pin")
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    refused = await admin.delete(f"{API}/machines/m1/checkpoints/keep")
    assert refused.status_code == 409 and "pinned" in refused.json()["message"]
    # The same words as the service's refusal (the CLI prints them through the hub as locally).
    assert refused.json()["hint"] == "unpin it first: `autovibe checkpoint unpin m1 keep`"
    unpinned = await admin.delete(f"{API}/machines/m1/checkpoints/keep/pin")
    assert unpinned.status_code == 200 and unpinned.json()["pinned"] is False
    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert tree["checkpoints"][0]["pinned"] is False
    assert (await admin.put(f"{API}/machines/m1/checkpoints/ghost/pin")).status_code == 404


async def test_refusals_come_before_any_job(admin: httpx.AsyncClient, client_for: ClientFor) -> None:
    await _deploy(admin)
    jobs_before = len((await admin.get(f"{API}/jobs")).json())
    for bad in ("1st", "current", "has space", "x" * 41):
        response = await admin.post(f"{API}/machines/m1/checkpoints", json={"name": bad})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"] == "invalid" and "name" in response.json()["details"]["fields"]
    bad_path = await admin.post(f"{API}/machines/m1/checkpoints/1st/restore", json={})
    assert bad_path.status_code == 400
    unknown = await admin.post(f"{API}/machines/m1/checkpoints/ghost/restore", json={})
    assert unknown.status_code == 404
    no_machine = await admin.post(f"{API}/machines/ghost/checkpoints", json={})
    assert no_machine.status_code == 404
    bad_branch = await admin.post(f"{API}/machines/m1/checkpoints/ghost/branch", json={"new_name": "a b"})
    assert bad_branch.status_code == 400
    taken = await admin.post(f"{API}/machines/m1/checkpoints/ghost/branch", json={"new_name": "m1"})
    assert taken.status_code == 404  # the checkpoint is looked up first
    viewer = await client_for("viewer", "alpha")
    denied = await viewer.post(f"{API}/machines/m1/checkpoints", json={"name": "mine"})
    assert denied.status_code == 403 and denied.json()["error"] == "denied"
    outsider = await client_for("operator", "beta")
    assert (await outsider.get(f"{API}/machines/m1/checkpoints")).status_code == 403
    assert len((await admin.get(f"{API}/jobs")).json()) == jobs_before

    made = await run_job(admin, "POST", "/machines/m1/checkpoints", json={"name": "once"})
    assert made["status"] == "succeeded"
    twice = await admin.post(f"{API}/machines/m1/checkpoints", json={"name": "once"})
    assert twice.status_code == 409
    branch_taken = await admin.post(f"{API}/machines/m1/checkpoints/once/branch", json={"new_name": "m1"})
    assert branch_taken.status_code == 409
    elsewhere = await admin.post(
        f"{API}/machines/m1/checkpoints/once/branch", json={"new_name": "m9", "project": "ghost"}
    )
    assert elsewhere.status_code == 404
    operator = await client_for("operator", "alpha")  # may branch in alpha, not into beta
    cross = await operator.post(
        f"{API}/machines/m1/checkpoints/once/branch", json={"new_name": "m9", "project": "beta"}
    )
    assert cross.status_code == 403


async def test_policies_schedules_and_a_dry_run_prune(
    admin: httpx.AsyncClient, client_for: ClientFor
) -> None:
    await _deploy(admin)
    for name in ("c1", "c2", "c3"):
        job = await run_job(admin, "POST", "/machines/m1/checkpoints", json={"name": name, "ram": False})
        assert job["status"] == "succeeded", job

    saved = await admin.put(
        f"{API}/retention/policies/last2", json={"rules": {"last": 2}, "description": "two newest"}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["rules"]["last"] == 2 and "2 latest" in saved.json()["summary"]
    empty = await admin.put(f"{API}/retention/policies/none", json={"rules": {}})
    assert empty.status_code == 400
    bad_duration = await admin.put(f"{API}/retention/policies/x", json={"rules": {"within": "1w"}})
    assert bad_duration.status_code == 400 and "rules.within" in bad_duration.json()["details"]["fields"]
    assert (await admin.get(f"{API}/retention/policies/ghost")).status_code == 404

    attached = await admin.put(f"{API}/retention/projects/alpha/policy", json={"policy": "last2"})
    assert attached.status_code == 200 and attached.json()["projects"] == ["alpha"]
    in_use = await admin.delete(f"{API}/retention/policies/last2")
    assert in_use.status_code == 409

    plan = await admin.post(f"{API}/retention/prune", json={"project": "alpha", "dry_run": True})
    assert plan.status_code == 200, plan.text
    report = plan.json()
    assert report["dry_run"] is True and report["operation_id"] is None
    (machine,) = report["machines"]
    assert machine["policy"] == "last2"
    assert {i["checkpoint"]: i["outcome"] for i in machine["items"]} == {
        "c1": "remove", "c2": "keep", "c3": "keep",
    }  # fmt: skip
    assert report["counts"]["remove"] == 1
    override = await admin.post(
        f"{API}/retention/prune", json={"machine": "m1", "dry_run": True, "rules": {"last": 1}}
    )
    assert override.json()["counts"] == {
        "keep": 1, "remove": 2, "removed": 0, "kept": 0, "deferred": 0, "failed": 0,
    }  # fmt: skip
    both = await admin.post(f"{API}/retention/prune", json={"machine": "m1", "project": "alpha"})
    assert both.status_code == 400
    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert len(tree["checkpoints"]) == 3  # a dry run deletes nothing

    pruned = await run_job(admin, "POST", "/retention/prune", json={"machine": "m1", "lock_wait_s": 5})
    assert pruned["status"] == "succeeded", pruned
    assert pruned["result"]["counts"]["removed"] == 1 and pruned["result"]["operation_id"]
    tree = (await admin.get(f"{API}/machines/m1/checkpoints")).json()
    assert [c["name"] for c in tree["checkpoints"]] == ["c2", "c3"]

    schedule = await admin.put(f"{API}/retention/machines/m1/schedule", json={"every": "6h", "ram": False})
    assert schedule.status_code == 200, schedule.text
    assert schedule.json()["every_s"] == 6 * 3600 and schedule.json()["scope"] == "machine"
    too_often = await admin.put(f"{API}/retention/projects/alpha/schedule", json={"every": "1m"})
    assert too_often.status_code == 400
    listed = (await admin.get(f"{API}/retention/schedules")).json()
    assert [(s["scope"], s["target"]) for s in listed] == [("machine", "m1")]
    outsider = await client_for("viewer", "beta")
    assert (await outsider.get(f"{API}/retention/schedules")).json() == []
    assert (await outsider.get(f"{API}/retention/policies")).json() == []
    insider = await client_for("viewer", "alpha")
    assert [p["name"] for p in (await insider.get(f"{API}/retention/policies")).json()] == ["last2"]
    assert (
        await insider.put(f"{API}/retention/policies/mine", json={"rules": {"last": 1}})
    ).status_code == 403
    removed = await admin.delete(f"{API}/retention/machines/m1/schedule")
    assert removed.json() == {"scope": "machine", "target": "m1", "removed": True}

    detached = await admin.delete(f"{API}/retention/projects/alpha/policy")
    assert detached.status_code == 200 and detached.json()["policy"] is None
    gone = await admin.delete(f"{API}/retention/policies/last2")
    assert gone.status_code == 200 and gone.json()["name"] == "last2"
    assert (await admin.get(f"{API}/retention/policies")).json() == []


async def _checkpoints(admin: httpx.AsyncClient, *names: str) -> None:
    for name in names:
        job = await run_job(admin, "POST", "/machines/m1/checkpoints", json={"name": name, "ram": False})
        assert job["status"] == "succeeded", job


async def test_nothing_blocks_a_restore_on_storage_that_rolls_back_to_any_snapshot(
    admin: httpx.AsyncClient, client_for: ClientFor
) -> None:
    await _deploy(admin)
    await _checkpoints(admin, "s1", "s2")
    found = await admin.get(f"{API}/machines/m1/checkpoints/s1/blockers")
    assert found.status_code == 200, found.text
    assert found.json() == {"machine": "m1", "checkpoint": "s1", "newer": [], "protected": []}
    assert (await admin.get(f"{API}/machines/m1/checkpoints/ghost/blockers")).status_code == 404
    assert (await admin.get(f"{API}/machines/ghost/checkpoints/s1/blockers")).status_code == 404
    assert (await admin.get(f"{API}/machines/m1/checkpoints/1st/blockers")).status_code == 400
    outsider = await client_for("viewer", "beta")
    assert (await outsider.get(f"{API}/machines/m1/checkpoints/s1/blockers")).status_code == 403


@pytest.mark.parametrize("settings", [ZFS], indirect=True)
async def test_zfs_blockers_name_the_newer_checkpoints_and_the_protected_ones(
    admin: httpx.AsyncClient,
) -> None:
    await _deploy(admin)
    await _checkpoints(admin, "s1", "s2", "s3")
    vmid = (await admin.get(f"{API}/machines/m1")).json()["vmid"]
    found = (await admin.get(f"{API}/machines/{vmid}/checkpoints/s1/blockers")).json()
    assert found == {"machine": "m1", "checkpoint": "s1", "newer": ["s3", "s2"], "protected": []}
    assert (await admin.put(f"{API}/machines/m1/checkpoints/s2/pin")).status_code == 200
    found = (await admin.get(f"{API}/machines/m1/checkpoints/s1/blockers")).json()
    assert found["newer"] == ["s3", "s2"] and found["protected"] == ["s2"]
    newest = (await admin.get(f"{API}/machines/m1/checkpoints/s3/blockers")).json()
    assert newest["newer"] == [] and newest["protected"] == []
    # What the route names is what a restore with discard_newer refuses (pinned) or deletes.
    refused = await run_job(
        admin, "POST", "/machines/m1/checkpoints/s1/restore", json={"discard_newer": True}
    )
    assert refused["status"] == "failed" and "'s2' (pinned)" in refused["error"]["message"]
    assert (await admin.delete(f"{API}/machines/m1/checkpoints/s2/pin")).status_code == 200
    restored = await run_job(
        admin, "POST", "/machines/m1/checkpoints/s1/restore", json={"discard_newer": True}
    )
    # Deleting the two newer checkpoints is high risk: the gate holds it for a second identity.
    assert restored["status"] == "failed" and restored["error"]["kind"] == "approval_required"
    assert "deletes 2 newer checkpoint(s)" in restored["error"]["message"]
