"""Network over HTTP: the profiles as data, apply (a job) then a clean check, drift found and fixed (a
job), the IP sets' refresh (a job), and requests refused before anything is queued."""

from __future__ import annotations

import httpx
import pytest

from autovibe.hub.service import Hub
from tests.integration.api.conftest import API, ClientFor, run_job

DEPLOY = {"name": "m1", "profile": "claude_code", "project": "alpha"}


@pytest.fixture
async def deployed(admin: httpx.AsyncClient) -> str:
    job = await run_job(admin, "POST", "/machines", json=DEPLOY)
    assert job["status"] == "succeeded", job
    return "m1"


async def test_profiles_are_listed_as_data(admin: httpx.AsyncClient) -> None:
    response = await admin.get(f"{API}/network/profiles")
    assert response.status_code == 200, response.text
    profiles = {p["name"]: p for p in response.json()}
    assert {"api_access", "management_access"} <= set(profiles)
    assert profiles["api_access"]["bridge"] == "vmbr1"
    assert "api.anthropic.com:443" in profiles["api_access"]["allow"]
    assert profiles["management_access"]["isolating"] is False


async def test_apply_then_check_is_clean(admin: httpx.AsyncClient, deployed: str) -> None:
    job = await run_job(admin, "POST", "/network/apply", json={"machine": deployed, "profile": "api_access"})
    assert job["status"] == "succeeded", job
    [applied] = job["result"]["applied"]
    assert applied["machine"] == deployed and applied["profile"] == "api_access"
    assert applied["changes"] == []  # the deploy applied it already: applying is idempotent
    check = await admin.get(f"{API}/network/check", params={"machine": deployed})
    assert check.status_code == 200, check.text
    [report] = check.json()
    assert report["machine"] == deployed and report["profile"] == "api_access"
    assert report["differences"] == []
    by_project = (await admin.get(f"{API}/network/check", params={"project": "alpha"})).json()
    assert [r["machine"] for r in by_project] == [deployed]
    assert (await admin.get(f"{API}/network/check", params={"project": "beta"})).json() == []


async def test_drift_is_found_and_fixed(admin: httpx.AsyncClient, hub: Hub, deployed: str) -> None:
    [clean] = (await admin.get(f"{API}/network/check", params={"machine": deployed})).json()
    assert clean["profile"] == "api_access" and clean["differences"] == []
    # Someone turns the VM's firewall off behind autovibe's back.
    machine = (await admin.get(f"{API}/machines/{deployed}")).json()
    await hub.base_deps.pve.put(f"/nodes/{machine['node']}/qemu/{machine['vmid']}/firewall/options", enable=0)
    [drifted] = (await admin.get(f"{API}/network/check", params={"machine": deployed})).json()
    assert drifted["differences"], drifted
    fixed = await run_job(admin, "POST", "/network/fix", json={"project": "alpha"})
    assert fixed["status"] == "succeeded", fixed
    [result] = fixed["result"]["machines"]
    assert result["fixed"] is True and result["differences"] == [] and fixed["result"]["ok"] is True
    [after] = (await admin.get(f"{API}/network/check")).json()
    assert after["differences"] == []


async def test_an_open_profile_waits_for_an_approval(admin: httpx.AsyncClient, deployed: str) -> None:
    body = {"machine": deployed, "profile": "management_access"}
    job = await run_job(admin, "POST", "/network/apply", json=body)
    assert job["status"] == "failed" and job["error"]["kind"] in ("denied", "approval_required"), job
    assert job["error"]["details"]["approval_id"]
    second = await run_job(admin, "POST", "/machines", json={**DEPLOY, "name": "m2"})
    assert second["status"] == "succeeded", second
    fleet = await run_job(
        admin, "POST", "/network/apply", json={"project": "alpha", "profile": "management_access"}
    )
    assert fleet["status"] == "failed", fleet
    failures = fleet["result"]["failures"]
    assert [f["machine"] for f in failures] == [deployed, "m2"]
    assert all(f["approval_id"] for f in failures) and fleet["result"]["applied"] == []
    checks = (await admin.get(f"{API}/network/check", params={"project": "alpha"})).json()
    assert [(c["profile"], c["differences"]) for c in checks] == [("api_access", [])] * 2


async def test_refresh_is_a_job_for_global_admins(admin: httpx.AsyncClient, client_for: ClientFor) -> None:
    job = await run_job(admin, "POST", "/network/refresh")
    assert job["status"] == "succeeded", job
    assert set(job["result"]) == {"changes", "failures"}
    project_admin = await client_for("admin", "alpha")
    refused = await project_admin.post(f"{API}/network/refresh")
    assert refused.status_code == 403 and refused.json()["error"] == "denied"


async def test_bad_network_requests_are_refused_before_queueing(
    admin: httpx.AsyncClient, client_for: ClientFor, deployed: str
) -> None:
    for body in (
        {"machine": deployed, "project": "alpha", "profile": "api_access"},  # both
        {"profile": "api_access"},  # neither
        {"machine": deployed, "profile": "Not A Profile"},
        {"machine": deployed, "profile": "api_access", "bridge": "vmbr9"},
        {"machine": "", "profile": "api_access"},
    ):
        response = await admin.post(f"{API}/network/apply", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "invalid"
    unknown = await admin.post(f"{API}/network/apply", json={"machine": deployed, "profile": "nope"})
    assert unknown.status_code == 404
    ghost = await admin.post(f"{API}/network/apply", json={"machine": "ghost", "profile": "api_access"})
    assert ghost.status_code == 404
    both = await admin.get(f"{API}/network/check", params={"machine": deployed, "project": "alpha"})
    assert both.status_code == 400
    assert (await admin.get(f"{API}/network/check", params={"project": "ghost"})).status_code == 404
    huge = await admin.get(f"{API}/network/check", params={"machine": "9" * 40})
    assert huge.status_code == 404
    viewer = await client_for("viewer", "alpha")
    denied = await viewer.post(f"{API}/network/apply", json={"machine": deployed, "profile": "api_access"})
    assert denied.status_code == 403
    assert (await viewer.post(f"{API}/network/fix", json={})).status_code == 403
    outsider = await client_for("operator", "beta")
    hidden = await outsider.post(f"{API}/network/apply", json={"machine": deployed})
    assert hidden.status_code == 403
    assert (await outsider.get(f"{API}/network/check")).json() == []
    kinds = {job["kind"] for job in (await admin.get(f"{API}/jobs")).json()}
    assert kinds == {"machine.create"}  # nothing else was queued
