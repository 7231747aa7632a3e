"""PveClient over real HTTPS to the simulator (``BackgroundServer``, pinned certificate): the failures
only a socket can have. A dropped connection is retried for a GET and never for a POST, whether
the connection died before PVE acted or after it acted and only the answer was lost.

Scenarios that behave the same on every transport are in ``test_client_sim.py``; TLS trust is in
``test_tls_pinning.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from autovibe.pve import PveConnectError, Retry
from autovibe.sim.app import SimApp
from autovibe.sim.errors import DropConnection
from autovibe.sim.faults import FaultPlan, RequestFault
from autovibe.sim.server import ASGIApp, Message, Receive, Scope, Send
from tests.integration.pve.test_client_sim import CLONE, Target, TlsFiles, make_tls_files, serving


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory)


def lose_answer_to(method: str, path: str) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware that lets the simulator handle ``method path`` and then drops the connection
    instead of answering: PVE acted, the client never hears of it."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def lossy(scope: Scope, receive: Receive, send: Send) -> None:
            if (scope.get("method"), scope.get("path")) != (method, "/api2/json" + path):
                await app(scope, receive, send)
                return

            async def discard(message: Message) -> None:
                pass

            await app(scope, receive, discard)
            raise DropConnection

        return lossy

    return wrap


@pytest.fixture
async def https(sim: SimApp, tls_files: TlsFiles) -> AsyncIterator[Target]:
    with serving(sim, "https", tls_files) as target:
        try:
            yield target
        finally:
            await target.aclose()


def drop(method: str, path: str, times: int | None) -> FaultPlan:
    return FaultPlan(requests=[RequestFault(method=method, path=path, kind="drop", times=times)])


def clone_tasks(sim: SimApp) -> list[str]:
    return [task.upid for task in sim.cluster.tasks.tasks.values() if task.type == "qmclone"]


async def test_get_survives_dropped_connections_after_two_backoffs(https: Target) -> None:
    https.sim.cluster.faults = drop("GET", "/version", times=2)
    pve = https.connect()

    version = await pve.version()

    assert version.release == "8.4"
    assert [s.status for s in https.recorder.calls("GET", "/version")] == [None, None, 200]
    assert len(https.sleeps) == 2
    assert 0.25 <= https.sleeps[0] <= 0.5 and 0.5 <= https.sleeps[1] <= 0.75  # default backoff + jitter


async def test_get_gives_up_after_the_configured_attempts(https: Target) -> None:
    https.sim.cluster.faults = drop("GET", "/cluster/resources", times=None)
    pve = https.connect(retry=Retry(attempts=3, backoff=0.5, max_backoff=1.0))

    with pytest.raises(PveConnectError) as caught:
        await pve.cluster_resources()

    assert (caught.value.method, caught.value.path) == ("GET", "/cluster/resources")
    assert [s.status for s in https.recorder.calls("GET", "/cluster/resources")] == [None] * 3
    assert len(https.sleeps) == 2 and all(0.5 <= delay <= 1.0 for delay in https.sleeps)


async def test_task_polls_ride_out_a_dropped_connection(https: Target) -> None:
    https.sim.cluster.faults = drop("GET", "/nodes/*/tasks/*/status", times=1)
    pve = https.connect()
    upid = await pve.post(CLONE, newid=100)

    final = await pve.wait_task(upid)

    assert final.ok
    polls = [s.status for s in https.recorder.seen if s.path.endswith("/status")]
    assert polls[0] is None and polls[-1] == 200


async def test_dropped_post_is_not_retried_and_nothing_is_cloned(https: Target) -> None:
    https.sim.cluster.faults = drop("POST", CLONE, times=1)
    pve = https.connect()

    with pytest.raises(PveConnectError) as caught:
        await pve.post(CLONE, newid=100)

    assert (caught.value.method, caught.value.path) == ("POST", CLONE)
    assert [s.status for s in https.recorder.calls("POST", CLONE)] == [None]
    assert https.sleeps == []
    assert clone_tasks(https.sim) == [] and 100 not in https.sim.cluster.guests
    # The fault is spent: asking again on purpose works, and makes exactly one clone.
    assert (await pve.wait_task(await pve.post(CLONE, newid=100))).ok
    assert len(clone_tasks(https.sim)) == 1


async def test_post_whose_answer_was_lost_is_not_repeated(sim: SimApp, tls_files: TlsFiles) -> None:
    with serving(sim, "https", tls_files, wrap=lose_answer_to("POST", CLONE)) as https:
        pve = https.connect(retry=Retry(attempts=5))
        try:
            with pytest.raises(PveConnectError):
                await pve.post(CLONE, newid=100, name="once")
            nextid = await pve.next_vmid()
        finally:
            await https.aclose()

    # The simulator did clone; repeating the POST would have started a second clone task.
    assert [s.status for s in https.recorder.calls("POST", CLONE)] == [200]
    assert len(clone_tasks(sim)) == 1
    assert sim.cluster.guests[100].config["name"] == "once" and nextid == 101


async def test_dropped_get_with_a_ticket_keeps_the_ticket(https: Target) -> None:
    pve = https.connect(https.root_password_auth())
    await pve.version()
    https.sim.cluster.faults = drop("GET", "/nodes", times=1)

    nodes = await pve.nodes()

    assert [node.node for node in nodes] == ["pve1", "pve2", "pve3"]
    assert len(https.recorder.logins()) == 1
    assert len(https.sleeps) == 1
