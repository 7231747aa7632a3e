"""Projects over HTTP: create, list, show, delete, and who may see or change which."""

from __future__ import annotations

import httpx

from tests.integration.api.conftest import API, ClientFor, run_job


async def test_create_show_list_delete(admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        f"{API}/projects", json={"name": "gamma", "description": "ml runs", "labels": {"team": "ml"}}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "gamma" and body["labels"] == {"team": "ml"} and body["created_at"]

    shown = await admin.get(f"{API}/projects/gamma")
    assert shown.status_code == 200
    assert shown.json()["description"] == "ml runs" and shown.json()["machines"] == []
    listed = (await admin.get(f"{API}/projects")).json()
    assert [p["name"] for p in listed] == ["alpha", "beta", "gamma"]

    deleted = await admin.delete(f"{API}/projects/gamma")
    assert deleted.status_code == 200 and deleted.json()["name"] == "gamma"
    gone = await admin.get(f"{API}/projects/gamma")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    again = await admin.delete(f"{API}/projects/gamma")
    assert again.status_code == 404


async def test_refusals(admin: httpx.AsyncClient) -> None:
    taken = await admin.post(f"{API}/projects", json={"name": "alpha"})
    assert taken.status_code == 409 and taken.json()["error"] == "conflict"
    bad = await admin.post(f"{API}/projects", json={"name": "Not A Slug"})
    assert bad.status_code == 400 and "name" in bad.json()["details"]["fields"]
    extra = await admin.post(f"{API}/projects", json={"name": "ok", "owner": "me"})
    assert extra.status_code == 400
    bad_label = await admin.post(f"{API}/projects", json={"name": "ok", "labels": {"critical": "maybe"}})
    assert bad_label.status_code == 400
    assert (await admin.get(f"{API}/projects/Bad%20Name")).status_code == 400
    assert (await admin.get(f"{API}/projects/ghost")).status_code == 404


async def test_a_project_with_machines_is_not_deleted(admin: httpx.AsyncClient) -> None:
    job = await run_job(
        admin, "POST", "/machines", json={"name": "p1", "profile": "claude_code", "project": "beta"}
    )
    assert job["status"] == "succeeded", job
    assert (await admin.get(f"{API}/projects/beta")).json()["machines"] == ["p1"]
    refused = await admin.delete(f"{API}/projects/beta")
    assert refused.status_code == 409
    assert "p1" in refused.json()["message"] and refused.json()["hint"]
    assert (await admin.get(f"{API}/projects/beta")).status_code == 200


async def test_roles(client_for: ClientFor) -> None:
    viewer = await client_for("viewer", "alpha")
    assert [p["name"] for p in (await viewer.get(f"{API}/projects")).json()] == ["alpha"]
    assert (await viewer.get(f"{API}/projects/alpha")).status_code == 200
    other = await viewer.get(f"{API}/projects/beta")
    assert other.status_code == 403 and other.json()["error"] == "denied"
    assert (await viewer.post(f"{API}/projects", json={"name": "mine"})).status_code == 403
    assert (await viewer.delete(f"{API}/projects/alpha")).status_code == 403

    project_admin = await client_for("admin", "alpha")  # creating projects needs a global admin
    assert (await project_admin.post(f"{API}/projects", json={"name": "mine"})).status_code == 403
    nobody = await client_for(None)
    assert (await nobody.get(f"{API}/projects")).json() == []
    global_viewer = await client_for("viewer")
    assert len((await global_viewer.get(f"{API}/projects")).json()) == 2
