"""Machines over HTTP: a fleet deploy as a job with streamed progress, reads, power, delete."""

from __future__ import annotations

import httpx

from tests.integration.api.conftest import API, ClientFor, follow, run_job


async def test_fleet_deploy_is_a_job_with_progress_events(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        f"{API}/machines", json={"name": "web", "profile": "claude_code", "project": "alpha", "count": 3}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == body["links"]["job"]
    events, job = await follow(admin, body["id"])
    assert job["status"] == "succeeded", job
    assert {o["name"] for o in job["result"]["outcomes"]} == {"web-1", "web-2", "web-3"}
    steps = [data for kind, data in events if kind == "step"]
    assert {s["machine"] for s in steps} == {"web-1", "web-2", "web-3"}
    assert any(s["step"] == "clone" for s in steps)
    listed = (await admin.get(f"{API}/machines", params={"project": "alpha"})).json()
    assert sorted(m["name"] for m in listed) == ["web-1", "web-2", "web-3"]
    assert all(m["status"] == "running" for m in listed)


async def test_bad_requests_are_refused_before_queueing(admin: httpx.AsyncClient) -> None:
    unknown_profile = await admin.post(
        f"{API}/machines", json={"name": "x", "profile": "nope", "project": "alpha"}
    )
    assert unknown_profile.status_code == 404
    assert unknown_profile.json()["error"] == "not_found"
    no_project = await admin.post(
        f"{API}/machines", json={"name": "x", "profile": "claude_code", "project": "ghost"}
    )
    assert no_project.status_code == 404
    bad_name = await admin.post(
        f"{API}/machines", json={"name": "Bad Name", "profile": "claude_code", "project": "alpha"}
    )
    assert bad_name.status_code == 400
    assert bad_name.json()["error"] == "invalid" and "name" in bad_name.json()["details"]["fields"]
    assert (await admin.get(f"{API}/jobs")).json() == []


async def test_power_and_delete(admin: httpx.AsyncClient) -> None:
    job = await run_job(
        admin, "POST", "/machines", json={"name": "one", "profile": "claude_code", "project": "alpha"}
    )
    assert job["status"] == "succeeded"
    stopped = await run_job(admin, "POST", "/machines/one/power", json={"action": "stop"})
    assert stopped["result"]["machine"]["status"] == "stopped"
    deleted = await run_job(admin, "DELETE", "/machines/one")
    assert deleted["status"] == "succeeded"
    missing = await admin.get(f"{API}/machines/one")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_viewer_cannot_deploy_and_gets_403_at_once(client_for: ClientFor) -> None:
    viewer = await client_for("viewer", "alpha")
    response = await viewer.post(
        f"{API}/machines", json={"name": "v", "profile": "claude_code", "project": "alpha"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "denied"
