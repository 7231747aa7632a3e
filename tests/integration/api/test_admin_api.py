"""Users, tokens, roles, the audit log and approvals over HTTP, each acting as a real caller."""

from __future__ import annotations

import json

import httpx

from autovibe.hub.service import Hub
from autovibe.store.tables import Approval
from tests.integration.api.conftest import API, ClientFor, follow, run_job


def _client_with(admin: httpx.AsyncClient, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=admin._transport, base_url="http://hub", headers={"Authorization": f"Bearer {secret}"}
    )


async def test_a_user_made_over_http_acts_with_its_token_until_revoked(admin: httpx.AsyncClient) -> None:
    made = await admin.post(f"{API}/users", json={"name": "carol", "display_name": "Carol"})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "carol" and made.json()["disabled"] is False
    again = await admin.post(f"{API}/users", json={"name": "carol"})
    assert again.status_code == 409 and again.json()["error"] == "conflict"

    bound = await admin.post(
        f"{API}/roles/bindings", json={"user": "carol", "role": "viewer", "project": "alpha"}
    )
    assert bound.status_code == 201, bound.text
    assert bound.json() == {"user": "carol", "role": "viewer", "project": "alpha"}
    listed = (await admin.get(f"{API}/roles/bindings", params={"user": "carol"})).json()
    assert listed == [{"user": "carol", "role": "viewer", "project": "alpha"}]

    created = await admin.post(f"{API}/tokens", json={"user": "carol", "description": "ci", "ttl": "1d"})
    assert created.status_code == 201, created.text
    token, secret = created.json()["token"], created.json()["secret"]
    assert secret.startswith(f"avt_{token['token_id']}_") and token["state"] == "active"
    assert token["expires_at"] is not None

    # The secret is shown once: never in listings, never in the audit log.
    tokens = await admin.get(f"{API}/tokens", params={"user": "carol"})
    assert [t["token_id"] for t in tokens.json()] == [token["token_id"]]
    assert secret not in tokens.text
    exported = await admin.get(f"{API}/audit/export")
    assert secret.split("_", 2)[2] not in exported.text

    async with _client_with(admin, secret) as carol:
        assert (await carol.get(f"{API}/machines")).status_code == 200
        assert (await carol.post(f"{API}/users", json={"name": "mallory"})).status_code == 403
        revoked = await admin.delete(f"{API}/tokens/{token['token_id']}")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        refused = await carol.get(f"{API}/machines")
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"

    unbound = await admin.request(
        "DELETE", f"{API}/roles/bindings", params={"user": "carol", "role": "viewer", "project": "alpha"}
    )
    assert unbound.status_code == 200, unbound.text
    assert (await admin.get(f"{API}/roles/bindings", params={"user": "carol"})).json() == []
    gone = await admin.request("DELETE", f"{API}/roles/bindings", params={"user": "carol", "role": "viewer"})
    assert gone.status_code == 404


async def test_disabling_a_user_stops_its_token_and_enabling_restores_it(admin: httpx.AsyncClient) -> None:
    assert (await admin.post(f"{API}/users", json={"name": "dave"})).status_code == 201
    secret = (await admin.post(f"{API}/tokens", json={"user": "dave"})).json()["secret"]
    async with _client_with(admin, secret) as dave:
        assert (await dave.get(f"{API}/machines")).status_code == 200
        disabled = await admin.post(f"{API}/users/dave/disable")
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert (await dave.get(f"{API}/machines")).status_code == 401
        # A token for a disabled user is a conflict, not the caller's 401.
        refused = await admin.post(f"{API}/tokens", json={"user": "dave"})
        assert refused.status_code == 409, refused.text
        assert (await admin.post(f"{API}/users/dave/enable")).json()["disabled"] is False
        assert (await dave.get(f"{API}/machines")).status_code == 200
    users = (await admin.get(f"{API}/users")).json()
    assert "dave" in [u["name"] for u in users]
    assert (await admin.post(f"{API}/users/nobody-here/disable")).status_code == 404
    assert (await admin.post(f"{API}/tokens", json={"user": "nobody-here"})).status_code == 404
    assert (await admin.delete(f"{API}/tokens/0123456789ab")).status_code == 404


async def test_identity_administration_is_for_global_admins(client_for: ClientFor) -> None:
    viewer = await client_for("viewer")
    refused = await viewer.post(f"{API}/users", json={"name": "eve"})
    assert refused.status_code == 403 and refused.json()["error"] == "denied"
    project_admin = await client_for("admin", "alpha")
    assert (await project_admin.post(f"{API}/users", json={"name": "eve"})).status_code == 403
    assert (await project_admin.get(f"{API}/users")).status_code == 403
    operator = await client_for("operator")
    assert (await operator.get(f"{API}/tokens")).status_code == 403
    assert (await operator.get(f"{API}/roles/bindings")).status_code == 403
    assert (
        await operator.post(f"{API}/roles/bindings", json={"user": "x", "role": "admin"})
    ).status_code == 403
    auditor = await client_for("auditor")
    assert (await auditor.get(f"{API}/users")).status_code == 200
    assert (await auditor.get(f"{API}/tokens")).status_code == 200
    bad = await auditor.post(f"{API}/users", json={"name": "Not A Slug"})
    assert bad.status_code == 400 and "name" in bad.json()["details"]["fields"]


async def test_the_audit_log_is_for_auditors_and_verifies(client_for: ClientFor) -> None:
    admin = await client_for("admin")
    assert (await admin.post(f"{API}/users", json={"name": "frank"})).status_code == 201
    admin_name = next(
        b["user"] for b in (await admin.get(f"{API}/roles/bindings")).json() if b["role"] == "admin"
    )
    operator = await client_for("operator")
    denied = await operator.get(f"{API}/audit")
    assert denied.status_code == 403 and denied.json()["error"] == "denied"
    assert (await operator.get(f"{API}/audit/verify")).status_code == 403
    assert (await operator.get(f"{API}/audit/export")).status_code == 403

    auditor = await client_for("auditor")
    entries = (await auditor.get(f"{API}/audit", params={"action": "user.add"})).json()
    assert [(e["target"], e["outcome"]) for e in entries] == [
        ("user frank", "succeeded"),
        ("user frank", "started"),
    ]
    assert entries[0]["decision"] == "allow" and entries[0]["actor"] == admin_name
    one = await auditor.get(f"{API}/audit/{entries[0]['id']}")
    assert one.status_code == 200 and one.json()["hash"] == entries[0]["hash"]
    # The operator's refusals are audited too.
    refusals = (await auditor.get(f"{API}/audit", params={"action": "audit.read", "limit": 5})).json()
    assert refusals and refusals[0]["decision"] == "deny"
    assert (await auditor.get(f"{API}/audit/999999")).status_code == 404

    verdict = await auditor.get(f"{API}/audit/verify")
    assert verdict.status_code == 200, verdict.text
    body = verdict.json()
    assert body["ok"] is True and body["head_id"] >= 2
    anchored = await auditor.get(
        f"{API}/audit/verify", params={"anchor": f"{body['head_id']}:{body['head_hash']}"}
    )
    assert anchored.json()["ok"] is True
    wrong = await auditor.get(f"{API}/audit/verify", params={"anchor": f"{body['head_id']}:{'0' * 64}"})
    assert wrong.status_code == 200 and wrong.json()["ok"] is False
    assert wrong.json()["first_bad"] == body["head_id"]
    assert (await auditor.get(f"{API}/audit/verify", params={"anchor": "nope"})).status_code == 400

    exported = await auditor.get(f"{API}/audit/export")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [e["id"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["prev_hash"] == "0" * 64


async def test_a_project_auditor_reads_only_its_project(client_for: ClientFor) -> None:
    auditor = await client_for("auditor", "alpha")
    assert (await auditor.get(f"{API}/audit")).status_code == 403
    assert (await auditor.get(f"{API}/audit", params={"project": "alpha"})).status_code == 200
    assert (await auditor.get(f"{API}/audit", params={"project": "beta"})).status_code == 403


async def test_an_approval_lets_a_held_delete_run_and_the_requester_cannot_approve_it(
    client_for: ClientFor, admin: httpx.AsyncClient
) -> None:
    deployed = await run_job(
        admin,
        "POST",
        "/machines",
        json={"name": "vault", "profile": "claude_code", "project": "alpha", "labels": {"critical": "true"}},
    )
    assert deployed["status"] == "succeeded", deployed

    operator = await client_for("operator", "alpha")
    response = await operator.delete(f"{API}/machines/vault")
    assert response.status_code == 202, response.text
    events, held = await follow(operator, response.json()["id"])
    assert held["status"] == "failed" and "approval" in held["error"]["message"], held
    approval_id = held["error"]["details"]["approval_id"]
    failed = [data for kind, data in events if kind == "status" and data.get("status") == "failed"]
    assert failed[0]["error"]["details"]["approval_id"] == approval_id

    pending = (await operator.get(f"{API}/approvals")).json()
    assert [p["id"] for p in pending] == [approval_id]
    assert pending[0]["requested_by"] != "" and pending[0]["action"] == "machine.delete"
    assert pending[0]["risk"] >= 50 and pending[0]["status"] == "pending"
    outsider = await client_for("viewer", "beta")
    assert (await outsider.get(f"{API}/approvals")).json() == []
    assert (await outsider.get(f"{API}/approvals/{approval_id}")).status_code == 404
    # An operator may not approve at all; a retry before approval is refused.
    assert (await operator.post(f"{API}/approvals/{approval_id}/approve")).status_code == 403
    early = await run_job(operator, "DELETE", "/machines/vault", params={"approval": approval_id})
    assert early["status"] == "failed" and early["error"]["kind"] == "conflict", early

    # The two-person rule: an admin's own held request cannot be approved by that admin.
    own = await run_job(admin, "DELETE", "/machines/vault")
    own_id = own["error"]["details"]["approval_id"]
    self_approval = await admin.post(f"{API}/approvals/{own_id}/approve")
    assert self_approval.status_code == 403 and "two-person" in (self_approval.json()["hint"] or "")
    rejected = await admin.post(f"{API}/approvals/{own_id[:8]}/reject")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    second = await client_for("admin", "alpha")
    approved = await second.post(f"{API}/approvals/{approval_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] != ""
    again = await second.post(f"{API}/approvals/{approval_id}/approve")
    assert again.status_code == 409
    assert (await operator.get(f"{API}/approvals")).json() == []

    done = await run_job(operator, "DELETE", "/machines/vault", params={"approval": approval_id})
    assert done["status"] == "succeeded", done
    assert (await operator.get(f"{API}/machines/vault")).status_code == 404
    used = (await operator.get(f"{API}/approvals/{approval_id}")).json()
    assert used["status"] == "used"
    assert (await admin.post(f"{API}/approvals/00000000/approve")).status_code == 404


async def test_approvals_are_found_by_any_unique_prefix(hub: Hub, admin: httpx.AsyncClient) -> None:
    """The CLI prints 8 characters of an id and takes any unique prefix, as on the hub host."""
    ids = (
        "abc10000-0000-4000-8000-000000000000",
        "abc20000-0000-4000-8000-000000000000",
        "f0000000-0000-4000-8000-000000000000",
    )
    with hub.db.session() as session:
        for approval_id in ids:
            session.add(
                Approval(
                    id=approval_id, action="machine.delete", target="machine x", project=None,
                    params={"params": {}}, risk=60, reasons={"reasons": ["deletes a machine"]},
                    requested_by="someone-else", status="pending",
                )
            )  # fmt: skip
    ambiguous = await admin.post(f"{API}/approvals/abc/reject")
    assert ambiguous.status_code == 404, ambiguous.text
    assert ambiguous.json()["message"] == "'abc' matches 2 requests"  # the gate's own words
    rejected = await admin.post(f"{API}/approvals/abc2/reject")
    assert rejected.status_code == 200 and rejected.json()["id"] == ids[1]
    assert rejected.json()["status"] == "rejected"
    one = await admin.get(f"{API}/approvals/f")  # one character is a prefix too
    assert one.status_code == 200 and one.json()["id"] == ids[2]
    assert (await admin.get(f"{API}/approvals/ABC1")).status_code == 400  # ids are lowercase hex


async def test_the_audit_list_takes_the_clis_largest_limit(admin: httpx.AsyncClient) -> None:
    assert (await admin.get(f"{API}/audit", params={"limit": 100_000})).status_code == 200
    too_many = await admin.get(f"{API}/audit", params={"limit": 100_001})
    assert too_many.status_code == 400 and "limit" in too_many.json()["details"]["fields"]


async def test_an_admin_cannot_disable_itself(client_for: ClientFor) -> None:
    admin = await client_for("admin")
    me = (await admin.get(f"{API}/hub")).status_code
    assert me == 200
    users = (await admin.get(f"{API}/users")).json()
    mine = [u["name"] for u in users if u["name"].startswith("admin-global")]
    refused = await admin.post(f"{API}/users/{mine[-1]}/disable")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert (await admin.get(f"{API}/hub")).status_code == 200  # still in
