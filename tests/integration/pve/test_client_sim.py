"""PveClient against the simulator (STYLE 9): every scenario runs twice, once in-process through
``httpx.ASGITransport`` and once over real HTTPS (``BackgroundServer``, certificate pinned by
fingerprint). The client code path is the one that talks to real PVE; only the transport differs.

Time never passes by itself: the client's ``sleep`` steps the simulator's frozen clock and its
``clock`` reads it, so task waits, retry backoffs and ticket ages all follow simulated time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from autovibe.pve import (
    DEFAULT_TLS,
    ClusterResource,
    NodeInfo,
    PasswordAuth,
    PveApiError,
    PveAuth,
    PveAuthError,
    PveClient,
    PveConfigMissing,
    PveLocked,
    PveTaskFailed,
    PveVersion,
    Retry,
    TaskStatus,
    TlsTrust,
    TokenAuth,
)
from autovibe.sim.app import SimApp
from autovibe.sim.certs import ensure_self_signed, server_ssl_context
from autovibe.sim.faults import FaultPlan, RequestFault, TaskFault
from autovibe.sim.server import ASGIApp, BackgroundServer, Message, Receive, Scope, Send

PASSWORD = "sim-root-password-1"
CLONE = "/nodes/pve1/qemu/9000/clone"


# -- harness -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One API request as it reached the simulator, and the status it was answered with."""

    method: str
    path: str  # after /api2/json
    status: int | None  # None: no answer was sent (connection dropped)
    headers: dict[str, str]
    params: dict[str, str]


class Recorder:
    """ASGI middleware in front of the simulator that notes every API request.

    It observes the wire, not the client: what reached the server and what came back. Over HTTPS
    it runs in the server's thread; tests read ``seen`` only after the client has its answer.
    """

    def __init__(self, app: SimApp) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        params = dict(parse_qsl(scope.get("query_string", b"").decode()))
        params.update(parse_qsl(body.decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"].removeprefix("/api2/json")
        answered = False

        def note(status: int | None) -> None:
            self.seen.append(Seen(scope["method"], path, status, headers, params))

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                # Noted before the answer leaves: over HTTPS the client may read it at once.
                answered = True
                note(message["status"])
            await send(message)

        try:
            await self.app(scope, replay, watch)
        finally:
            if not answered:
                note(None)

    def calls(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def logins(self) -> list[Seen]:
        return self.calls("POST", "/access/ticket")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    fingerprint: str  # "AB:CD:...", as PVE shows it


def make_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate like a PVE node's, valid for 127.0.0.1 and the seed node names."""
    folder = tmp_path_factory.mktemp("sim-tls")
    cert, key = folder / "sim.crt", folder / "sim.key"
    return TlsFiles(cert, key, ensure_self_signed(cert, key))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory)


class Target:
    """The simulator behind one transport, and a factory for clients wired to its clock."""

    def __init__(self, sim: SimApp, recorder: Recorder, url: str, tls: TlsTrust, asgi: bool) -> None:
        self.sim = sim
        self.recorder = recorder
        self.url = url
        self.tls = tls
        self.asgi = asgi
        self.sleeps: list[float] = []
        self._clients: list[PveClient] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sim.clock.advance(seconds)

    def connect(
        self,
        auth: PveAuth | None = None,
        *,
        tls: TlsTrust | None = None,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> PveClient:
        """A client for this target, closed by the fixture. ``tls`` replaces the target's trust."""
        client = PveClient(
            self.url,
            auth=auth or TokenAuth(self.sim.ensure_token()),
            tls=tls or self.tls,
            transport=httpx.ASGITransport(app=self.recorder) if self.asgi else None,
            sleep=self.sleep,
            clock=clock or self.sim.clock.now,
            **options,
        )
        self._clients.append(client)
        return client

    def root_password_auth(self) -> PasswordAuth:
        self.sim.cluster.access.set_password("root@pam", PASSWORD)
        return PasswordAuth("root@pam", PASSWORD)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@contextlib.contextmanager
def serving(
    sim: SimApp, transport: str, tls_files: TlsFiles, wrap: Callable[[ASGIApp], ASGIApp] | None = None
) -> Iterator[Target]:
    """The simulator behind ``transport`` ("asgi" or "https"); ``wrap`` adds middleware on the
    wire side of the recorder (HTTPS only)."""
    recorder = Recorder(sim)
    if transport == "asgi":
        yield Target(sim, recorder, "https://pve1:8006", DEFAULT_TLS, asgi=True)
        return
    context = server_ssl_context(tls_files.cert, tls_files.key)
    app = wrap(recorder) if wrap is not None else recorder
    with BackgroundServer(app, ssl_context=context) as server:
        yield Target(sim, recorder, server.url, TlsTrust(fingerprint=tls_files.fingerprint), asgi=False)


@pytest.fixture(params=["asgi", "https"])
async def target(request: pytest.FixtureRequest, sim: SimApp, tls_files: TlsFiles) -> AsyncIterator[Target]:
    with serving(sim, request.param, tls_files) as built:
        try:
            yield built
        finally:
            await built.aclose()  # before the server stops, so no connection is left behind


async def clone(pve: PveClient, newid: int, **params: Any) -> TaskStatus:
    upid = await pve.post(CLONE, newid=newid, **params)
    return await pve.wait_task(upid)


# -- readers -------------------------------------------------------------------------------------


async def test_typed_readers_see_the_seed_cluster(target: Target) -> None:
    pve = target.connect()

    version = await pve.version()
    nodes = await pve.nodes()
    guests = await pve.cluster_resources(type="vm")
    storages = await pve.cluster_resources(type="storage")
    nextid = await pve.next_vmid()

    assert isinstance(version, PveVersion) and version.release == "8.4"
    assert version.version.startswith("8.4.")
    assert all(isinstance(node, NodeInfo) for node in nodes)
    assert [(node.node, node.online) for node in nodes] == [("pve1", True), ("pve2", True), ("pve3", True)]
    assert all(node.maxcpu > 0 and node.maxmem > node.mem > 0 for node in nodes)
    assert all(isinstance(guest, ClusterResource) for guest in guests)
    templates = {guest.vmid: guest for guest in guests if guest.template}
    assert set(templates) == {9000, 9001}
    assert templates[9000].id == "qemu/9000" and templates[9000].node == "pve1"
    assert templates[9000].maxdisk == 20 * 1024**3 and "template" in templates[9000].tags
    assert {s.type for s in storages} == {"storage"} and "shared" in {s.storage for s in storages}
    assert nextid == 100


# -- a guest's life through raw calls ------------------------------------------------------------


async def test_clone_configure_start_snapshot_rollback_stop_delete(target: Target) -> None:
    pve = target.connect()
    vmid = await pve.next_vmid()
    seen: list[TaskStatus] = []

    upid = await pve.post(CLONE, newid=vmid, name="life")
    final = await pve.wait_task(upid, progress=seen.append)

    assert final.ok and final.type == "qmclone" and final.exitstatus == "OK"
    assert seen[0].status == "running" and seen[-1] == final
    assert [s.status for s in seen].count("stopped") == 1
    assert sum(target.sleeps) > 0  # waiting moved simulated time, nothing slept for real

    config = await pve.get(f"/nodes/pve1/qemu/{vmid}/config")
    assert config["name"] == "life" and config["cores"] == 2
    assert await pve.put(f"/nodes/pve1/qemu/{vmid}/config", cores=4, description="v1") is None
    assert (await pve.get(f"/nodes/pve1/qemu/{vmid}/config"))["cores"] == 4

    assert (await pve.wait_task(await pve.post(f"/nodes/pve1/qemu/{vmid}/status/start"))).ok
    assert (await pve.get(f"/nodes/pve1/qemu/{vmid}/status/current"))["status"] == "running"

    snap = await pve.post(f"/nodes/pve1/qemu/{vmid}/snapshot", snapname="before", vmstate=True)
    assert (await pve.wait_task(snap)).ok
    snapshots = {s["name"]: s for s in await pve.get(f"/nodes/pve1/qemu/{vmid}/snapshot")}
    assert snapshots["before"]["vmstate"] == 1 and snapshots["current"]["parent"] == "before"

    await pve.put(f"/nodes/pve1/qemu/{vmid}/config", cores=8)
    rollback = await pve.post(f"/nodes/pve1/qemu/{vmid}/snapshot/before/rollback")
    assert (await pve.wait_task(rollback)).ok
    assert (await pve.get(f"/nodes/pve1/qemu/{vmid}/config"))["cores"] == 4
    assert (await pve.get(f"/nodes/pve1/qemu/{vmid}/status/current"))["status"] == "running"  # RAM state

    assert (await pve.wait_task(await pve.post(f"/nodes/pve1/qemu/{vmid}/status/stop"))).ok
    assert (await pve.get(f"/nodes/pve1/qemu/{vmid}/status/current"))["status"] == "stopped"

    destroy = await pve.delete(f"/nodes/pve1/qemu/{vmid}", purge=True, **{"destroy-unreferenced-disks": True})
    assert (await pve.wait_task(destroy)).ok
    with pytest.raises(PveConfigMissing):
        await pve.get(f"/nodes/pve1/qemu/{vmid}/config")
    assert vmid not in {g.vmid for g in await pve.cluster_resources(type="vm")}


# -- locks and failing tasks ---------------------------------------------------------------------


async def test_config_change_during_a_ram_snapshot_is_refused_as_locked(target: Target) -> None:
    pve = target.connect()
    await clone(pve, 100)
    await pve.wait_task(await pve.post("/nodes/pve1/qemu/100/status/start"))
    # The clock stands still from here, so the RAM snapshot keeps the lock while we poke at it.
    running = await pve.post("/nodes/pve1/qemu/100/snapshot", snapname="ram", vmstate=True)
    assert (await pve.task_status(running)).running

    with pytest.raises(PveLocked) as locked:
        await pve.put("/nodes/pve1/qemu/100/config", cores=4)
    second = await pve.post("/nodes/pve1/qemu/100/snapshot", snapname="other")
    with pytest.raises(PveTaskFailed) as failed:
        await pve.wait_task(second)

    assert locked.value.lock == "snapshot" and locked.value.status == 500
    assert (locked.value.method, locked.value.path) == ("PUT", "/nodes/pve1/qemu/100/config")
    assert failed.value.upid == second
    assert failed.value.exitstatus == "VM is locked (snapshot)" and failed.value.lock == "snapshot"
    assert failed.value.log_tail[-1] == "TASK ERROR: VM is locked (snapshot)"
    assert len(target.recorder.calls("PUT", "/nodes/pve1/qemu/100/config")) == 1  # a lock is not retried
    # Once the snapshot is done the lock is gone and the same change goes through.
    assert (await pve.wait_task(running)).ok
    await pve.put("/nodes/pve1/qemu/100/config", cores=4)
    assert (await pve.get("/nodes/pve1/qemu/100/config"))["cores"] == 4


async def test_failed_clone_task_raises_and_leaves_no_guest(target: Target) -> None:
    target.sim.cluster.faults = FaultPlan(tasks=[TaskFault(task_type="qmclone", failure_rate=1.0)])
    pve = target.connect()
    volumes_before = set(target.sim.cluster.volumes)

    upid = await pve.post(CLONE, newid=100, full=True)
    with pytest.raises(PveTaskFailed) as failed:
        await pve.wait_task(upid)

    assert failed.value.upid == upid and failed.value.lock is None
    assert failed.value.exitstatus == "clone failed: simulated storage error"
    assert failed.value.log_tail[-1] == "TASK ERROR: clone failed: simulated storage error"
    with pytest.raises(PveConfigMissing):
        await pve.get("/nodes/pve1/qemu/100/config")
    assert 100 not in {g.vmid for g in await pve.cluster_resources(type="vm")}
    assert set(target.sim.cluster.volumes) == volumes_before  # no half-copied disk left behind
    assert await pve.next_vmid() == 100


# -- tickets -------------------------------------------------------------------------------------


async def test_password_login_sends_cookie_and_csrf_only_on_writes(target: Target) -> None:
    pve = target.connect(target.root_password_auth())

    await pve.version()
    status = await clone(pve, 100)

    login, *calls = target.recorder.seen
    assert (login.method, login.path, login.status) == ("POST", "/access/ticket", 200)
    assert login.params == {"username": "root@pam", "password": PASSWORD}
    assert "cookie" not in login.headers and "authorization" not in login.headers
    assert status.ok and status.user == "root@pam"  # the clone ran as the ticket's user
    post = target.recorder.calls("POST", CLONE)[0]
    assert post.status == 200 and post.headers["csrfpreventiontoken"]
    gets = [s for s in calls if s.method == "GET"]
    assert gets and all("csrfpreventiontoken" not in s.headers for s in gets)
    assert all(s.headers["cookie"].startswith("PVEAuthCookie=PVE:root@pam:") for s in calls)
    assert len(target.recorder.logins()) == 1


async def test_ticket_is_renewed_before_it_expires(target: Target) -> None:
    pve = target.connect(target.root_password_auth())
    await pve.version()
    first = target.recorder.seen[-1].headers["cookie"].removeprefix("PVEAuthCookie=")

    target.sim.clock.advance(110 * 60)
    await pve.version()
    renewal, call = target.recorder.seen[-2:]
    second = call.headers["cookie"].removeprefix("PVEAuthCookie=")
    # Another 1 h 50: the first ticket is long dead on the server, the renewed one is not.
    target.sim.clock.advance(110 * 60)
    assert (await pve.version()).release == "8.4"

    assert (renewal.path, renewal.status) == ("/access/ticket", 200)
    assert renewal.params["password"] == first  # renewed with the ticket itself, not the password
    assert second != first and call.status == 200
    assert [s.params["password"] for s in target.recorder.logins()] == [PASSWORD, first, second]
    assert all(s.status == 200 for s in target.recorder.seen)


async def test_ticket_expired_between_calls_means_a_fresh_password_login(target: Target) -> None:
    pve = target.connect(target.root_password_auth())
    await pve.version()

    target.sim.clock.advance(130 * 60)  # 2 h 10: past PVE's 2 h lifetime and 5 min grace
    version = await pve.version()

    assert version.release == "8.4"
    assert [s.params["password"] for s in target.recorder.logins()] == [PASSWORD, PASSWORD]
    assert all(s.status == 200 for s in target.recorder.seen)


async def test_ticket_refused_by_the_server_is_replaced_and_the_write_repeated(target: Target) -> None:
    # The client's clock lags the server's, so it still believes in a ticket PVE has expired.
    frozen = target.sim.clock.now()
    pve = target.connect(target.root_password_auth(), clock=lambda: frozen)
    await pve.version()
    target.sim.clock.advance(130 * 60)

    status = await clone(pve, 100)

    posts = target.recorder.calls("POST", CLONE)
    assert [s.status for s in posts] == [401, 200]  # a 401 means PVE did nothing: safe to repeat
    assert [s.params["password"] for s in target.recorder.logins()] == [PASSWORD, PASSWORD]
    assert posts[0].headers["cookie"] != posts[1].headers["cookie"]
    assert status.ok and len([t for t in target.sim.cluster.tasks.tasks.values() if t.type == "qmclone"]) == 1


async def test_wrong_password_is_an_auth_error(target: Target) -> None:
    target.root_password_auth()
    pve = target.connect(PasswordAuth("root@pam", "not-the-password"))

    with pytest.raises(PveAuthError) as denied:
        await pve.version()

    assert denied.value.status == 401 and denied.value.path == "/access/ticket"
    assert [(s.method, s.path) for s in target.recorder.seen] == [("POST", "/access/ticket")]


# -- retries -------------------------------------------------------------------------------------


async def test_get_answered_503_is_retried_until_it_succeeds(target: Target) -> None:
    target.sim.cluster.faults = FaultPlan(
        requests=[RequestFault(method="GET", path="/version", kind="http_503", times=2)]
    )
    pve = target.connect()

    version = await pve.version()

    assert version.release == "8.4"
    assert [s.status for s in target.recorder.calls("GET", "/version")] == [503, 503, 200]
    assert len(target.sleeps) == 2 and target.sleeps[0] < target.sleeps[1]


async def test_post_answered_503_is_not_retried(target: Target) -> None:
    target.sim.cluster.faults = FaultPlan(requests=[RequestFault(method="POST", path=CLONE, kind="http_503")])
    pve = target.connect(retry=Retry(attempts=5))

    with pytest.raises(PveApiError) as caught:
        await pve.post(CLONE, newid=100)

    assert caught.value.status == 503 and caught.value.method == "POST"
    assert len(target.recorder.calls("POST", CLONE)) == 1
    assert target.sleeps == [] and 100 not in target.sim.cluster.guests
