"""The operations journal over HTTP: listing (scoped to what the caller may read), one operation,
and resuming orphaned operations as a job."""

from __future__ import annotations

import httpx

from autovibe.hub.service import Hub
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus, StepStatus
from tests.integration.api.conftest import API, ClientFor, follow, run_job


async def test_a_deploy_is_listed_and_shown_to_those_who_may_read_it(
    client_for: ClientFor, admin: httpx.AsyncClient
) -> None:
    job = await run_job(
        admin, "POST", "/machines", json={"name": "opsy", "profile": "claude_code", "project": "alpha"}
    )
    assert job["status"] == "succeeded", job
    op_id = job["result"]["outcomes"][0]["operation_id"]

    listed = await admin.get(f"{API}/operations")
    assert listed.status_code == 200, listed.text
    deploys = [op for op in listed.json() if op["id"] == op_id]
    assert len(deploys) == 1
    deploy = deploys[0]
    assert deploy["kind"] == "machine.deploy" and deploy["status"] == "completed"
    assert deploy["project"] == "alpha" and deploy["params"]["name"] == "opsy"
    assert deploy["steps"] and all(step["status"] == "done" for step in deploy["steps"])
    assert (await admin.get(f"{API}/operations", params={"unfinished": True})).json() == []

    shown = await admin.get(f"{API}/operations/{op_id[:8]}")
    assert shown.status_code == 200 and shown.json()["id"] == op_id

    alpha_viewer = await client_for("viewer", "alpha")
    assert [op["id"] for op in (await alpha_viewer.get(f"{API}/operations")).json()] == [op_id]
    assert (await alpha_viewer.get(f"{API}/operations/{op_id}")).status_code == 200
    beta_viewer = await client_for("viewer", "beta")
    assert (await beta_viewer.get(f"{API}/operations")).json() == []
    hidden = await beta_viewer.get(f"{API}/operations/{op_id}")
    assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
    assert (await admin.get(f"{API}/operations/ffffffff")).status_code == 404
    assert (await admin.get(f"{API}/operations", params={"limit": 0})).status_code == 400


async def test_resume_with_nothing_to_resume_succeeds(admin: httpx.AsyncClient) -> None:
    job = await run_job(admin, "POST", "/operations/resume")
    assert job["status"] == "succeeded", job
    assert job["kind"] == "ops.resume"
    assert job["result"] == {"resumed": [], "stuck": 0}


async def test_resume_retries_a_stuck_operation(hub: Hub, admin: httpx.AsyncClient) -> None:
    # A stuck operation (its undo failed) is left for a person by the leader's recovery: the resume job
    # is what drives it to an end (every step here was done, so it completes).
    journal = Journal(hub.db)
    op_id = journal.create("machine.deploy", {"name": "ghost", "project": "alpha"}, ["validate"], actor="x")
    journal.step(op_id, 0, StepStatus.DONE)
    journal.set_status(op_id, OpStatus.STUCK, error="the undo failed")
    unfinished = (await admin.get(f"{API}/operations", params={"unfinished": True})).json()
    assert [(op["id"], op["status"]) for op in unfinished] == [(op_id, "stuck")]

    response = await admin.post(f"{API}/operations/resume")
    assert response.status_code == 202
    events, job = await follow(admin, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert [(r["id"], r["was"], r["status"]) for r in job["result"]["resumed"]] == [
        (op_id, "stuck", "completed")
    ]
    assert job["result"]["stuck"] == 0
    assert any(kind == "operation" and data["id"] == op_id for kind, data in events)
    assert (await admin.get(f"{API}/operations/{op_id}")).json()["status"] == "completed"


async def test_resume_needs_a_global_operator(client_for: ClientFor) -> None:
    project_operator = await client_for("operator", "alpha")
    refused = await project_operator.post(f"{API}/operations/resume")
    assert refused.status_code == 403 and refused.json()["error"] == "denied"
    viewer = await client_for("viewer")
    assert (await viewer.post(f"{API}/operations/resume")).status_code == 403
    assert (await viewer.get(f"{API}/jobs")).json() == []
