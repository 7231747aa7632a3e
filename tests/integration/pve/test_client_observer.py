"""PveClient's ``observer``: one ``RequestObservation`` per HTTP attempt, retries, logins and
failed attempts included, against the simulator with its fault injection (docs/sim-faults.md).

Answers (success, 500) run on both transports; a dropped connection and a timeout only exist on a
real socket, so those run over HTTPS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import structlog

from autovibe.pve import PveApiError, PveConnectError, PveTimeout, PveTimeouts, RequestObservation, Retry
from autovibe.sim.app import SimApp
from autovibe.sim.faults import FaultPlan, RequestFault
from tests.integration.pve.test_client_sim import CLONE, Target, TlsFiles, make_tls_files, serving

CONFIG = "/nodes/pve1/qemu/9000/config"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory)


@pytest.fixture(params=["asgi", "https"])
async def target(request: pytest.FixtureRequest, sim: SimApp, tls_files: TlsFiles) -> AsyncIterator[Target]:
    with serving(sim, request.param, tls_files) as built:
        try:
            yield built
        finally:
            await built.aclose()


@pytest.fixture
async def https(sim: SimApp, tls_files: TlsFiles) -> AsyncIterator[Target]:
    with serving(sim, "https", tls_files) as built:
        try:
            yield built
        finally:
            await built.aclose()


def summary(seen: list[RequestObservation]) -> list[tuple[str, str, int | None, str | None]]:
    return [(o.method, o.path, o.status, o.error) for o in seen]


def faults(*rules: RequestFault) -> FaultPlan:
    return FaultPlan(requests=list(rules))


async def test_a_successful_call_is_observed_once(target: Target) -> None:
    seen: list[RequestObservation] = []
    pve = target.connect(observer=seen.append)

    await pve.version()
    upid = await pve.post(CLONE, newid=100)

    assert summary(seen) == [("GET", "/version", 200, None), ("POST", CLONE, 200, None)]
    assert all(0 < o.elapsed_s < 10 for o in seen)
    assert upid.startswith("UPID:pve1:")


async def test_a_500_is_observed_per_attempt_with_its_status(target: Target) -> None:
    target.sim.cluster.faults = faults(
        RequestFault(method="GET", path=CONFIG, kind="http_500", times=1),
        RequestFault(method="POST", path=CLONE, kind="http_500", times=1),
    )
    seen: list[RequestObservation] = []
    pve = target.connect(observer=seen.append)

    config = await pve.get(CONFIG)  # a GET is retried after the 500
    with pytest.raises(PveApiError):
        await pve.post(CLONE, newid=100)  # a POST is not

    assert config["name"]
    assert summary(seen) == [
        ("GET", CONFIG, 500, "http"),
        ("GET", CONFIG, 200, None),
        ("POST", CLONE, 500, "http"),
    ]


async def test_the_ticket_login_and_a_4xx_are_attempts_too(target: Target) -> None:
    seen: list[RequestObservation] = []
    pve = target.connect(target.root_password_auth(), observer=seen.append)

    await pve.version()
    with pytest.raises(PveApiError):
        await pve.get("/nodes/pve1/qemu/4242/config")

    assert summary(seen) == [
        ("POST", "/access/ticket", 200, None),
        ("GET", "/version", 200, None),
        ("GET", "/nodes/pve1/qemu/4242/config", 500, "http"),  # SEMANTICS §1: a missing guest is a 500
    ]


async def test_dropped_connections_are_observed_without_a_status(https: Target) -> None:
    https.sim.cluster.faults = faults(
        RequestFault(method="GET", path="/version", kind="drop", times=2),
        RequestFault(method="POST", path=CLONE, kind="drop", times=1),
    )
    seen: list[RequestObservation] = []
    pve = https.connect(observer=seen.append)

    await pve.version()
    with pytest.raises(PveConnectError):
        await pve.post(CLONE, newid=100)

    assert summary(seen) == [
        ("GET", "/version", None, "connect"),
        ("GET", "/version", None, "connect"),
        ("GET", "/version", 200, None),
        ("POST", CLONE, None, "connect"),
    ]


async def test_a_timeout_is_observed_with_its_kind(https: Target) -> None:
    https.sim.cluster.faults = faults(RequestFault(path="/nodes", kind="latency", latency_s=0.3, times=1))
    seen: list[RequestObservation] = []
    pve = https.connect(observer=seen.append, timeouts=PveTimeouts(read=0.05), retry=Retry(attempts=1))

    with pytest.raises(PveTimeout):
        await pve.nodes()

    assert summary(seen) == [("GET", "/nodes", None, "timeout")]
    assert 0.04 < seen[0].elapsed_s < 0.3


async def test_an_observer_that_raises_never_breaks_the_request(target: Target) -> None:
    calls: list[RequestObservation] = []

    def broken(observation: RequestObservation) -> None:
        calls.append(observation)
        raise RuntimeError("metrics backend exploded")

    pve = target.connect(observer=broken)

    with structlog.testing.capture_logs() as logs:
        version = await pve.version()

    assert version.release == "8.4" and len(calls) == 1
    failures = [entry for entry in logs if entry["event"] == "pve.observer_failed"]
    assert len(failures) == 1 and failures[0]["log_level"] == "warning"
    assert failures[0]["path"] == "/version" and failures[0]["exc_info"] is True
