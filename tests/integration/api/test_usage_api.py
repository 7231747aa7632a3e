"""Usage, quotas and limits over HTTP: reports after a deploy and a usage pass, the quota lifecycle with
enforcement (dry run and job), a whole usage pass on demand, who may set and read quotas, and machine
limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from autovibe.hub.service import Hub
from tests.integration.api.conftest import API, ClientFor, run_job

DEPLOY = {"name": "m1", "profile": "claude_code", "project": "alpha"}


@pytest.fixture
async def deployed(admin: httpx.AsyncClient, hub: Hub) -> str:
    job = await run_job(admin, "POST", "/machines", json=DEPLOY)
    assert job["status"] == "succeeded", job
    await hub.scheduler_pass()  # the first usage pass samples m1; the second integrates the time between
    await hub.scheduler_pass()
    return "m1"


def _standing(body: dict[str, Any]) -> dict[str, Any]:
    """A project's standing without the moment (the simulator's clock runs on between two reads) and the
    usage figures that grow with it."""
    return {
        **{k: v for k, v in body.items() if k != "at"},
        "quotas": [{k: v for k, v in q.items() if k not in ("usage", "percent")} for q in body["quotas"]],
    }


async def test_usage_report_after_a_deploy(admin: httpx.AsyncClient, deployed: str) -> None:
    by_project = await admin.get(f"{API}/usage")
    assert by_project.status_code == 200, by_project.text
    body = by_project.json()
    assert body["by"] == "project" and body["since"] <= body["until"]
    rows = {row["project"]: row for row in body["rows"]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["covered_h"] > 0 and rows["alpha"]["mem_gib_hours"] > 0
    assert rows["beta"]["covered_h"] == 0
    by_machine = await admin.get(f"{API}/usage", params={"by": "machine", "project": "alpha", "since": "30d"})
    assert by_machine.status_code == 200, by_machine.text
    [row] = by_machine.json()["rows"]
    assert row["project"] == "alpha" and row["machine"] == deployed
    assert len(row["cpu_by_hour"]) >= 24 * 30
    day = await admin.get(f"{API}/usage", params={"period": "day"})
    assert day.status_code == 200 and day.json()["since"].endswith("T00:00:00Z")


async def test_usage_bad_windows_and_scoped_readers(admin: httpx.AsyncClient, client_for: ClientFor) -> None:
    for params in ({"since": "yesterday"}, {"since": "2999-01-01"}, {"since": "1990-01-01"},
                   {"since": "2d", "period": "day"}, {"by": "vm"}):  # fmt: skip
        response = await admin.get(f"{API}/usage", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"] == "invalid"
    viewer = await client_for("viewer", "alpha")
    rows = (await viewer.get(f"{API}/usage")).json()["rows"]
    assert [row["project"] for row in rows] == ["alpha"]
    assert (await viewer.get(f"{API}/usage", params={"project": "beta"})).status_code == 403
    assert (await admin.get(f"{API}/usage", params={"project": "ghost"})).status_code == 404


async def test_quota_set_status_enforce_dry_run_unset(admin: httpx.AsyncClient, deployed: str) -> None:
    empty = await admin.get(f"{API}/projects/alpha/quota")
    assert empty.status_code == 200, empty.text
    at = empty.json().pop("at")  # when the standing was computed, on the target's clock
    assert empty.json() == {"project": "alpha", "level": "ok", "quotas": [], "at": at}
    assert datetime.fromisoformat(at) <= datetime.fromisoformat(
        (await admin.get(f"{API}/usage")).json()["until"]
    )
    tiny = {"mem_gib_hours": 0.0001, "cpu_core_hours": 1000, "period": "day"}
    put = await admin.put(f"{API}/projects/alpha/quota", json=tiny)
    assert put.status_code == 200, put.text
    status = put.json()
    assert status["level"] == "emergency"  # m1 used far more than 0.0001 GiB-hours since the pass
    quotas = {q["metric"]: q for q in status["quotas"]}
    assert set(quotas) == {"cpu_core_hours", "mem_gib_hours"}
    assert quotas["mem_gib_hours"]["percent"] > 150 and quotas["cpu_core_hours"]["level"] == "ok"
    assert quotas["mem_gib_hours"]["period"] == "day"
    assert _standing((await admin.get(f"{API}/projects/alpha/quota")).json()) == _standing(status)
    listed = (await admin.get(f"{API}/quotas")).json()
    assert [p["project"] for p in listed] == ["alpha", "beta"] and _standing(listed[0]) == _standing(status)
    assert listed[0]["at"] == listed[1]["at"] >= status["at"]  # one "now" for the whole listing

    dry = await admin.post(f"{API}/projects/alpha/quota/enforce", json={"dry_run": True})
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert report["dry_run"] is True and report["previous"] == "ok" and report["level"] == "emergency"
    assert report["action"]["stop"] == [deployed]
    machine = (await admin.get(f"{API}/machines/{deployed}")).json()
    assert machine["status"] == "running"  # a dry run stops nothing

    removed = await admin.delete(f"{API}/projects/alpha/quota", params={"metric": "mem_gib_hours"})
    assert removed.status_code == 200 and removed.json() == {"project": "alpha", "removed": 1}
    after = (await admin.get(f"{API}/projects/alpha/quota")).json()
    assert after["level"] == "ok" and [q["metric"] for q in after["quotas"]] == ["cpu_core_hours"]
    all_gone = await admin.delete(f"{API}/projects/alpha/quota")
    assert all_gone.json()["removed"] == 1
    assert (await admin.get(f"{API}/projects/alpha/quota")).json()["quotas"] == []


async def test_quota_enforce_job_stops_the_machines(admin: httpx.AsyncClient, deployed: str) -> None:
    await admin.put(f"{API}/projects/alpha/quota", json={"mem_gib_hours": 0.0001, "period": "day"})
    job = await run_job(admin, "POST", "/projects/alpha/quota/enforce", json={"dry_run": False})
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["level"] == "emergency" and result["action"]["stop"] == [deployed]
    assert result["action"]["operation_id"]
    machine = (await admin.get(f"{API}/machines/{deployed}")).json()
    assert machine["status"] == "stopped"
    again = await admin.post(f"{API}/projects/alpha/quota/enforce", json={"dry_run": True})
    assert again.json()["previous"] == "emergency" and again.json()["action"] is None  # nothing left


async def test_usage_pass_job_samples_and_enforces(
    admin: httpx.AsyncClient, client_for: ClientFor, deployed: str
) -> None:
    # Storage is measured by the first pass (m1's 20 GiB disk): 1 GiB is far over.
    await admin.put(f"{API}/projects/alpha/quota", json={"storage_gib": 1})
    dry = await run_job(admin, "POST", "/usage/pass", json={"dry_run": True})
    assert dry["status"] == "succeeded", dry
    report = dry["result"]
    assert report["dry_run"] is True and report["sampled"] == 1
    [action] = report["enforcement"]
    assert (action["project"], action["previous"], action["level"]) == ("alpha", "ok", "emergency")
    assert action["stop"] == [deployed] and action["operation_id"] is None
    assert (await admin.get(f"{API}/machines/{deployed}")).json()["status"] == "running"
    assert (await admin.get(f"{API}/projects/alpha/quota/enforce")).status_code == 405  # not a read

    real = await run_job(admin, "POST", "/usage/pass", json={})
    assert real["status"] == "succeeded", real
    [action] = real["result"]["enforcement"]
    assert real["result"]["dry_run"] is False and action["stop"] == [deployed] and action["operation_id"]
    assert (await admin.get(f"{API}/machines/{deployed}")).json()["status"] == "stopped"
    assert datetime.fromisoformat(real["result"]["at"]) > datetime.fromisoformat(report["at"])
    again = await run_job(admin, "POST", "/usage/pass", json={"dry_run": True})
    assert again["result"]["enforcement"] == []  # the level did not change again

    for role, project in (("operator", None), ("admin", "alpha"), ("viewer", None)):
        other = await client_for(role, project)
        refused = await other.post(f"{API}/usage/pass", json={})
        assert refused.status_code == 403 and refused.json()["error"] == "denied", (role, project)
    for body in ({"dry_run": "maybe"}, {"dry": True}):
        assert (await admin.post(f"{API}/usage/pass", json=body)).status_code == 400, body


async def test_quota_rights(admin: httpx.AsyncClient, client_for: ClientFor) -> None:
    operator = await client_for("operator", "alpha")
    refused = await operator.put(f"{API}/projects/alpha/quota", json={"cpu_core_hours": 10})
    assert refused.status_code == 403 and refused.json()["error"] == "denied"
    assert (await operator.delete(f"{API}/projects/alpha/quota")).status_code == 403
    enforce = await operator.post(f"{API}/projects/alpha/quota/enforce", json={"dry_run": True})
    assert enforce.status_code == 403
    project_admin = await client_for("admin", "alpha")  # enforcing needs a global admin
    assert (await project_admin.post(f"{API}/projects/alpha/quota/enforce", json={})).status_code == 403
    assert (await admin.put(f"{API}/projects/beta/quota", json={"net_gb": 5})).status_code == 200
    viewer = await client_for("viewer", "alpha")
    assert (await viewer.get(f"{API}/projects/alpha/quota")).status_code == 200
    hidden = await viewer.get(f"{API}/projects/beta/quota")
    assert hidden.status_code == 403 and hidden.json()["error"] == "denied"
    assert [p["project"] for p in (await viewer.get(f"{API}/quotas")).json()] == ["alpha"]


async def test_quota_bad_requests(admin: httpx.AsyncClient) -> None:
    for body in ({}, {"period": "month"}, {"cpu_core_hours": 0}, {"cpu_core_hours": -1},
                 {"cpu_core_hours": 1, "period": "year"}, {"cpu_core_hours": 1, "gpu": 1}):  # fmt: skip
        response = await admin.put(f"{API}/projects/alpha/quota", json=body)
        assert response.status_code == 400, (body, response.text)
    missing = await admin.put(f"{API}/projects/ghost/quota", json={"cpu_core_hours": 1})
    assert missing.status_code == 404
    assert (await admin.get(f"{API}/projects/ghost/quota")).status_code == 404
    assert (await admin.post(f"{API}/projects/ghost/quota/enforce", json={})).status_code == 404
    bad_metric = await admin.delete(f"{API}/projects/alpha/quota", params={"metric": "gpu"})
    assert bad_metric.status_code == 400


async def test_limits_set_and_show(admin: httpx.AsyncClient, client_for: ClientFor, deployed: str) -> None:
    blank = await admin.get(f"{API}/machines/{deployed}/limits")
    assert blank.status_code == 200, blank.text
    assert blank.json() == {"machine": deployed, "max_cpu_pct": None, "max_mem_pct": None,
                            "max_uptime_s": None, "idle_cpu_pct": None, "idle_for_s": None,
                            "violations": []}  # fmt: skip
    operator = await client_for("operator", "alpha")
    put = await operator.put(
        f"{API}/machines/{deployed}/limits",
        json={"max_cpu_pct": 90, "idle_cpu_pct": 5, "idle_for_s": 1800},
    )
    assert put.status_code == 200, put.text
    assert put.json()["max_cpu_pct"] == 90 and put.json()["idle_for_s"] == 1800
    cleared = await admin.put(
        f"{API}/machines/{deployed}/limits", json={"max_cpu_pct": None, "max_mem_pct": 80}
    )
    assert cleared.status_code == 200
    shown = (await admin.get(f"{API}/machines/{deployed}/limits")).json()
    assert shown["max_cpu_pct"] is None and shown["max_mem_pct"] == 80 and shown["idle_cpu_pct"] == 5

    half_idle = await admin.put(f"{API}/machines/{deployed}/limits", json={"idle_cpu_pct": None})
    assert half_idle.status_code == 400 and half_idle.json()["error"] == "invalid"
    for body in ({}, {"max_cpu_pct": 101}, {"max_uptime_s": 0}, {"max_cpu": 5}):
        assert (await admin.put(f"{API}/machines/{deployed}/limits", json=body)).status_code == 400, body
    assert (await admin.get(f"{API}/machines/ghost/limits")).status_code == 404
    assert (await admin.get(f"{API}/machines/{'9' * 40}/limits")).status_code == 404
    beta_viewer = await client_for("viewer", "beta")
    assert (await beta_viewer.get(f"{API}/machines/{deployed}/limits")).status_code == 403
    viewer = await client_for("viewer", "alpha")
    assert (await viewer.get(f"{API}/machines/{deployed}/limits")).status_code == 200
    denied = await viewer.put(f"{API}/machines/{deployed}/limits", json={"max_cpu_pct": 50})
    assert denied.status_code == 403
