"""The Prometheus exposition: what it contains, and that ``promtool check metrics`` (the Prometheus
project's own linter, Debian package ``prometheus``) accepts it without a single warning.

PVE request metrics come from a real ``PveClient`` talking to the simulator with injected faults,
plus observations of failures only a socket produces (timeouts, dropped connections).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from autovibe.pve import PveApiError, PveClient, RequestObservation, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.sim.faults import FaultPlan, RequestFault
from autovibe.usage.metrics import (
    CONTENT_TYPE,
    LEVELS,
    REQUEST_BUCKETS,
    DomainCollector,
    ProjectFigures,
    PveRequestMetrics,
    domain_families,
    exposition,
    new_registry,
)

CONFIG = "/nodes/pve1/qemu/9000/config"
CLONE = "/nodes/pve1/qemu/9000/clone"
UPID = "UPID:pve2:0002F1C4:01A2B3C4:66F0A1B2:qmclone:9000:root@pam:"

PROJECTS = [
    ProjectFigures(
        "alpha",
        usage={"cpu_core_hours": 12.5, "mem_gib_hours": 40.0, "net_gb": 1.25, "storage_gib": 64.0},
        quota={"cpu_core_hours": 100.0, "storage_gib": 128.0},
        level="ok",
    ),
    ProjectFigures(
        "beta", usage={"cpu_core_hours": 104.0, "net_gb": 9.0}, quota={"cpu_core_hours": 100.0}, level="warn"
    ),
    ProjectFigures("gamma", usage={"mem_gib_hours": 130.0}, quota={"mem_gib_hours": 100.0}, level="throttle"),
    # A quota on a figure with no usage yet: ratio 0.
    ProjectFigures(
        "delta", usage={"net_gb": 15.0}, quota={"net_gb": 10.0, "storage_gib": 50.0}, level="emergency"
    ),
    ProjectFigures("idle"),  # no usage, no quota
]
MACHINES = {"running": 7, "stopped": 3, "missing": 1}
OPERATIONS = {
    ("deploy", "succeeded"): 42,
    ("deploy", "failed"): 3,
    ("checkpoint", "succeeded"): 17,
    ("rollback", "succeeded"): 2,
    ("destroy", "interrupted"): 1,
}


async def _no_wait(seconds: float) -> None:
    pass


@pytest.fixture
async def observed(sim: SimApp) -> list[RequestObservation]:
    """What a PveClient observed meeting a retried 503, a 500 on a POST and plain successes, plus
    failures only a real socket produces (see tests/integration/pve/test_client_observer.py)."""
    sim.cluster.faults = FaultPlan(
        requests=[
            RequestFault(method="GET", path=CONFIG, kind="http_503", times=2),
            RequestFault(method="POST", path=CLONE, kind="http_500", times=1),
        ]
    )
    seen: list[RequestObservation] = []
    async with PveClient(
        "https://pve1:8006",
        auth=TokenAuth(sim.ensure_token()),
        transport=httpx.ASGITransport(app=sim),
        sleep=_no_wait,
        observer=seen.append,
    ) as pve:
        await pve.version()
        await pve.get(CONFIG)
        with pytest.raises(PveApiError):
            await pve.post(CLONE, newid=100)
        with pytest.raises(PveApiError):
            await pve.get("/nodes/pve1/qemu/4242/status/current")  # no such guest: 500, not retried
        await pve.get("/nodes/pve1/qemu/9000/snapshot")
    seen.append(RequestObservation("GET", f"/nodes/pve2/tasks/{UPID}/status", None, 5.0, "timeout"))
    seen.append(RequestObservation("POST", "/nodes/pve3/qemu/101/status/start", None, 0.003, "connect"))
    seen.append(RequestObservation("GET", "/access/permissions", 403, 0.004, "http"))
    return seen


def build_registry(
    observed: Sequence[RequestObservation] = (), *, include_process: bool = False
) -> CollectorRegistry:
    """A registry with the PVE request metrics fed ``observed`` and the domain figures above."""
    registry = new_registry(include_process=include_process)
    recorder = PveRequestMetrics(registry)
    for observation in observed:
        recorder.observe(observation)
    DomainCollector(registry).update(projects=PROJECTS, machines=MACHINES, operations=OPERATIONS)
    return registry


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate sample {key}"
            found[key] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


# -- promtool ------------------------------------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("promtool is missing in CI: .ci/run installs it with Debian's 'prometheus' package")
    pytest.skip("promtool is not installed (Debian package 'prometheus'); CI installs it and runs this")


def check_metrics(path: Path) -> subprocess.CompletedProcess[str]:
    with path.open("rb") as stdin:
        result = subprocess.run(
            [promtool(), "check", "metrics"], stdin=stdin, capture_output=True, timeout=60, check=False
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


@pytest.mark.parametrize("include_process", [False, True])
def test_promtool_accepts_the_exposition_without_warnings(
    observed: list[RequestObservation], tmp_path: Path, include_process: bool
) -> None:
    registry = build_registry(observed, include_process=include_process)
    target = tmp_path / "metrics.prom"
    target.write_bytes(exposition(registry))

    checked = check_metrics(target)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""
    assert "autovibe_pve_request_errors_total" in target.read_text()  # the interesting part was there


def test_promtool_does_report_a_bad_exposition(tmp_path: Path) -> None:
    """The check above is not vacuous: the same harness sees promtool's lint findings."""
    target = tmp_path / "bad.prom"
    target.write_text(
        "# HELP autovibe_pve_latency_ms x\n# TYPE autovibe_pve_latency_ms counter\n"
        "autovibe_pve_latency_ms 1\n"
    )

    checked = check_metrics(target)

    assert checked.returncode != 0
    assert '"_total" suffix' in checked.stdout + checked.stderr


# -- content -------------------------------------------------------------------------------------


def test_exposition_holds_the_domain_figures() -> None:
    found = samples(exposition(build_registry()).decode())

    assert value(found, "autovibe_project_usage", project="alpha", metric="mem_gib_hours") == 40.0
    assert value(found, "autovibe_project_usage", project="beta", metric="net_gb") == 9.0
    assert value(found, "autovibe_project_quota", project="alpha", metric="storage_gib") == 128.0
    quotas = {
        dict(labels)["project"] + "/" + dict(labels)["metric"]
        for name, labels in found
        if name == "autovibe_project_quota"
    }
    assert quotas == {
        "alpha/cpu_core_hours",
        "alpha/storage_gib",
        "beta/cpu_core_hours",
        "gamma/mem_gib_hours",
        "delta/net_gb",
        "delta/storage_gib",
    }
    assert value(found, "autovibe_project_quota_ratio", project="alpha", metric="storage_gib") == 0.5
    assert value(found, "autovibe_project_quota_ratio", project="beta", metric="cpu_core_hours") == 1.04
    assert value(found, "autovibe_project_quota_ratio", project="delta", metric="net_gb") == 1.5
    assert value(found, "autovibe_project_quota_ratio", project="delta", metric="storage_gib") == 0.0
    assert not [
        labels
        for name, labels in found
        if name.startswith("autovibe_project_quota") and ("project", "idle") in labels
    ]
    for project, level in [("alpha", 0), ("beta", 1), ("gamma", 2), ("delta", 3), ("idle", 0)]:
        assert value(found, "autovibe_project_enforcement_level", project=project) == level
        states = {
            state: value(
                found, "autovibe_project_enforcement", project=project, autovibe_project_enforcement=state
            )
            for state in LEVELS
        }
        assert states == {state: float(state == LEVELS[level]) for state in LEVELS}
    assert value(found, "autovibe_machines", state="running") == 7
    assert value(found, "autovibe_machines", state="missing") == 1
    assert value(found, "autovibe_operations_total", kind="deploy", outcome="failed") == 3
    assert value(found, "autovibe_operations_total", kind="destroy", outcome="interrupted") == 1


def test_exposition_holds_the_pve_requests(observed: list[RequestObservation]) -> None:
    found = samples(exposition(build_registry(observed)).decode())
    qemu = "/nodes/{node}/qemu/{vmid}"
    task_status = "/nodes/{node}/tasks/{upid}/status"

    def attempts(method: str, endpoint: str, status: str) -> float:
        return value(
            found,
            "autovibe_pve_request_duration_seconds_count",
            method=method,
            endpoint=endpoint,
            status=status,
        )

    def errors(method: str, endpoint: str, kind: str) -> float:
        return value(found, "autovibe_pve_request_errors_total", method=method, endpoint=endpoint, kind=kind)

    assert attempts("GET", "/version", "200") == 1
    assert attempts("GET", f"{qemu}/config", "503") == 2
    assert attempts("GET", f"{qemu}/config", "200") == 1
    assert errors("GET", f"{qemu}/config", "5xx") == 2
    assert attempts("POST", f"{qemu}/clone", "500") == 1
    assert errors("POST", f"{qemu}/clone", "5xx") == 1
    assert errors("GET", f"{qemu}/status/current", "5xx") == 1
    assert attempts("GET", f"{qemu}/snapshot", "200") == 1
    assert attempts("GET", task_status, "none") == 1
    assert errors("GET", task_status, "transport") == 1
    assert errors("POST", f"{qemu}/status/start", "transport") == 1
    assert errors("GET", "/access/permissions", "4xx") == 1
    # The 5 s timeout sits in the 5 s bucket, not the 2.5 s one; no bucket beyond 30 s but +Inf.
    bucket = "autovibe_pve_request_duration_seconds_bucket"
    timed_out = {"method": "GET", "endpoint": task_status, "status": "none"}
    assert value(found, bucket, le="2.5", **timed_out) == 0
    assert value(found, bucket, le="5.0", **timed_out) == 1
    assert value(found, bucket, le="+Inf", **timed_out) == 1
    les = {dict(labels)["le"] for name, labels in found if name == bucket}
    assert les == {*(repr(bound) for bound in REQUEST_BUCKETS), "+Inf"}
    # Nothing concrete leaks into a label: no node names, VMIDs or UPIDs.
    endpoints = {dict(labels)["endpoint"] for _, labels in found if "endpoint" in dict(labels)}
    assert not [e for e in endpoints if "pve" in e or "UPID" in e or any(ch.isdigit() for ch in e)]
    successes = sum(
        v for (name, labels), v in found.items() if name.endswith("_count") and ("status", "200") in labels
    )
    assert successes == 3  # version, config after two 503s, snapshot list


def test_domain_collector_serves_the_latest_update_only() -> None:
    registry = new_registry()
    domain = DomainCollector(registry)
    first = samples(exposition(registry).decode())
    usage = {"net_gb": 1.0}

    domain.update(projects=[ProjectFigures("alpha", usage=usage)], machines={"running": 1})
    usage["net_gb"] = 99.0  # figures are copied: later changes by the caller do not leak in
    second = samples(exposition(registry).decode())
    domain.update(machines={"stopped": 2})
    third = samples(exposition(registry).decode())

    assert first == {}
    assert second == {
        ("autovibe_project_usage", frozenset({("project", "alpha"), ("metric", "net_gb")})): 1.0,
        ("autovibe_project_enforcement_level", frozenset({("project", "alpha")})): 0.0,
        **{
            (
                "autovibe_project_enforcement",
                frozenset({("project", "alpha"), ("autovibe_project_enforcement", s)}),
            ): float(s == "ok")
            for s in LEVELS
        },
        ("autovibe_machines", frozenset({("state", "running")})): 1.0,
    }
    assert third == {("autovibe_machines", frozenset({("state", "stopped")})): 2.0}


def test_domain_families_is_pure_and_ordered() -> None:
    first = domain_families(projects=PROJECTS, machines=MACHINES, operations=OPERATIONS)
    again = domain_families(
        projects=PROJECTS, machines=dict(reversed(MACHINES.items())), operations=OPERATIONS
    )

    assert [family.name for family in first] == [
        "autovibe_project_usage",
        "autovibe_project_quota",
        "autovibe_project_quota_ratio",
        "autovibe_project_enforcement_level",
        "autovibe_project_enforcement",
        "autovibe_machines",
        "autovibe_operations",
    ]
    assert first == again
    assert all(family.documentation for family in first)
    assert all(math.isfinite(sample.value) for family in first for sample in family.samples)


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be one of ok, warn, throttle, emergency"):
        ProjectFigures("alpha", level="panic")


def test_registries_are_private_and_process_metrics_optional() -> None:
    bare = exposition(new_registry()).decode()
    full = exposition(new_registry(include_process=True)).decode()

    assert bare == ""
    assert "python_info" in full and "python_gc_objects_collected_total" in full
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
