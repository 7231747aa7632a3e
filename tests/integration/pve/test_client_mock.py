"""PveClient behaviours staged with httpx.MockTransport handlers (STYLE 10). The simulator-backed
tests are in test_client_sim.py and test_client_https.py, TLS trust in test_tls_pinning.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import structlog

from autovibe.pve import (
    ClusterResource,
    PasswordAuth,
    PveApiError,
    PveAuthError,
    PveClient,
    PveConfigMissing,
    PveConnectError,
    PveInvalidParams,
    PveLocked,
    PveProtocolError,
    PveTaskFailed,
    PveTaskTimeout,
    PveTimeout,
    Retry,
    TokenAuth,
)
from tests.fakes.pve_handlers import (
    PVE_URL,
    UPID_FAIL,
    UPID_OK,
    ConcurrencyProbe,
    FakeClock,
    Scripted,
    TaskServer,
    TicketServer,
    api_error,
    auth_rejected,
    form_of,
    ok,
    running,
    stopped,
)

TOKEN = "root@pam!ci=0b4f0d3c-7d6e-4a9b-9a43-5f1c2d3e4f50"
VERSION = {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def connect(clock):
    clients: list[PveClient] = []

    def build(handler, *, auth=None, **options):
        client = PveClient(
            PVE_URL,
            auth=auth or TokenAuth(TOKEN),
            transport=httpx.MockTransport(handler),
            sleep=clock.sleep,
            clock=clock,
            **options,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


# -- retries -------------------------------------------------------------------------------------


async def test_get_answered_503_then_200_is_retried_after_a_backoff(connect, clock):
    handler = Scripted(api_error(503, "Service Unavailable"), ok(VERSION))

    version = await connect(handler).version()

    assert version.version == "8.4.1"
    assert len(handler.requests) == 2
    assert len(clock.sleeps) == 1
    assert 0.25 <= clock.sleeps[0] <= 0.5  # backoff 0.25 plus up to 0.25 jitter


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_writes_answered_5xx_are_not_retried(connect, clock, method):
    handler = Scripted(api_error(500, "got timeout"), ok(None))

    with pytest.raises(PveApiError) as caught:
        await connect(handler).request(method, "/nodes/pve1/qemu/100/config", {"cores": 2})

    assert caught.value.status == 500
    assert (caught.value.method, caught.value.path) == (method, "/nodes/pve1/qemu/100/config")
    assert len(handler.requests) == 1
    assert clock.sleeps == []


async def test_post_is_not_retried_after_a_dropped_connection(connect, clock):
    handler = Scripted(httpx.RemoteProtocolError, ok("UPID"))

    with pytest.raises(PveConnectError):
        await connect(handler).post("/nodes/pve1/qemu/100/status/start")

    assert len(handler.requests) == 1


async def test_get_survives_connection_errors_with_growing_backoff(connect, clock):
    handler = Scripted(httpx.ConnectError, httpx.RemoteProtocolError, ok(VERSION))

    await connect(handler).version()

    assert len(handler.requests) == 3
    assert len(clock.sleeps) == 2
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 0.75


async def test_get_gives_up_after_the_configured_attempts(connect, clock):
    handler = Scripted(*(httpx.ReadTimeout for _ in range(3)))

    with pytest.raises(PveTimeout) as caught:
        await connect(handler, retry=Retry(attempts=3, backoff=1.0, max_backoff=1.5)).get(
            "/cluster/resources"
        )

    assert caught.value.path == "/cluster/resources"
    assert len(handler.requests) == 3
    assert len(clock.sleeps) == 2
    assert all(1.0 <= delay <= 1.5 for delay in clock.sleeps)  # capped at max_backoff


async def test_get_of_a_missing_guest_is_not_retried(connect, clock):
    message = "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
    handler = Scripted(api_error(500, message))

    with pytest.raises(PveConfigMissing):
        await connect(handler).get("/nodes/pve1/qemu/100/config")

    assert len(handler.requests) == 1
    assert clock.sleeps == []


# -- encoding and envelope -----------------------------------------------------------------------


async def test_post_sends_a_form_with_booleans_as_1_0_and_without_nones(connect):
    handler = Scripted(ok(UPID_OK))

    upid = await connect(handler).post(
        "/nodes/pve1/qemu/9000/clone", newid=101, full=True, pool=None, name="b1"
    )

    request = handler.requests[0]
    assert upid == UPID_OK
    assert request.url.path == "/api2/json/nodes/pve1/qemu/9000/clone"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == {"newid": ["101"], "full": ["1"], "name": ["b1"]}


async def test_delete_sends_parameters_in_the_query_and_no_body(connect):
    handler = Scripted(ok(UPID_OK))

    await connect(handler).delete("/nodes/pve1/qemu/100", purge=True, **{"destroy-unreferenced-disks": False})

    request = handler.requests[0]
    assert request.content == b""
    assert dict(request.url.params) == {"purge": "1", "destroy-unreferenced-disks": "0"}


async def test_a_parameter_called_path_does_not_clash_with_the_api_path(connect):
    handler = Scripted(ok({"/vms": {"VM.Audit": "1"}}))

    permissions = await connect(handler).permissions(path="/vms", userid="ci@pve!bot")

    assert permissions == {"/vms": {"VM.Audit": 1}}
    assert handler.requests[0].url.params["path"] == "/vms"
    assert handler.requests[0].url.params["userid"] == "ci@pve!bot"


async def test_typed_readers_coerce_string_numbers(connect):
    resources = [{"id": "qemu/100", "type": "qemu", "node": "pve1", "vmid": "100", "maxmem": "4096"}]
    nodes = [{"node": "pve1", "status": "online", "maxcpu": "8"}]
    handler = Scripted(ok("100"), ok(resources), ok(nodes))
    pve = connect(handler)

    assert await pve.next_vmid() == 100
    assert await pve.cluster_resources(type="vm") == [
        ClusterResource(id="qemu/100", type="qemu", node="pve1", vmid=100, maxmem=4096)
    ]
    assert (await pve.nodes())[0].maxcpu == 8
    assert handler.requests[1].url.params["type"] == "vm"
    assert "type" not in handler.requests[2].url.params


@pytest.mark.parametrize("answer", [httpx.Response(200, text="<html>login</html>"), ok([{"version": 8}])])
async def test_unexpected_answers_are_protocol_errors(connect, answer):
    with pytest.raises(PveProtocolError) as caught:
        await connect(Scripted(answer)).version()

    assert caught.value.path == "/version"


async def test_api_errors_keep_pve_message_and_parameter_errors(connect):
    handler = Scripted(
        api_error(400, "Parameter verification failed.", errors={"vmid": "VM 100 already exists"}),
        api_error(500, "VM is locked (snapshot)", legacy=True),
        auth_rejected(),
    )
    pve = connect(handler)

    with pytest.raises(PveInvalidParams) as invalid:
        await pve.get("/cluster/nextid", vmid=100)
    with pytest.raises(PveLocked) as locked:
        await pve.post("/nodes/pve1/qemu/100/snapshot", snapname="before")
    with pytest.raises(PveAuthError) as denied:
        await pve.get("/version")

    assert invalid.value.errors == {"vmid": "VM 100 already exists"}
    assert locked.value.lock == "snapshot"
    assert denied.value.message == "Authentication failed!"
    assert len(handler.requests) == 3  # a token 401 is final: no login to retry with


# -- authentication ------------------------------------------------------------------------------


async def test_token_goes_in_the_authorization_header_without_csrf_or_cookie(connect):
    handler = Scripted(ok(UPID_OK))

    await connect(handler).post("/nodes/pve1/qemu/100/status/start")

    headers = handler.requests[0].headers
    assert headers["authorization"] == f"PVEAPIToken={TOKEN}"
    assert "csrfpreventiontoken" not in headers
    assert "cookie" not in headers


async def test_ticket_cookie_on_every_call_and_csrf_only_on_writes(connect):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))

    await pve.version()
    await pve.post("/nodes/pve1/qemu/100/status/start")

    login, get, post = server.requests
    assert form_of(login) == {"username": ["root@pam"], "password": [server.password]}
    assert "cookie" not in login.headers and "authorization" not in login.headers
    assert get.headers["cookie"].startswith("PVEAuthCookie=PVE:root@pam:")
    assert "csrfpreventiontoken" not in get.headers
    assert post.headers["cookie"] == get.headers["cookie"]
    assert post.headers["csrfpreventiontoken"] == server.live[get.headers["cookie"].split("=", 1)[1]]
    assert server.logins == ["password"]


async def test_ticket_is_renewed_with_itself_once_older_than_1h45(connect, clock):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))
    await pve.version()
    first_ticket = server.requests[-1].headers["cookie"].removeprefix("PVEAuthCookie=")

    clock.advance(104 * 60)
    await pve.version()
    assert server.logins == ["password"]

    clock.advance(2 * 60)
    await pve.version()

    renewal, call = server.requests[-2:]
    assert server.logins == ["password", "renewal"]
    assert form_of(renewal)["password"] == [first_ticket]
    assert call.headers["cookie"] != f"PVEAuthCookie={first_ticket}"


async def test_expired_ticket_is_replaced_by_a_password_login(connect, clock):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))
    await pve.version()

    clock.advance(3 * 3600)
    await pve.version()

    assert server.logins == ["password", "password"]


async def test_401_mid_run_logs_in_again_exactly_once_and_repeats_the_call(connect):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))
    await pve.version()
    server.revoke()

    upid = await pve.post("/nodes/pve1/qemu/100/status/start")

    assert upid == UPID_OK
    assert server.logins == ["password", "password"]
    assert [r.url.path.removeprefix("/api2/json") for r in server.requests] == [
        "/access/ticket",
        "/version",
        "/nodes/pve1/qemu/100/status/start",
        "/access/ticket",
        "/nodes/pve1/qemu/100/status/start",
    ]


async def test_concurrent_401s_share_one_new_login(connect):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))
    await pve.version()
    server.revoke()

    await asyncio.gather(*(pve.version() for _ in range(5)))

    assert server.logins == ["password", "password"]


async def test_a_ticket_refused_twice_raises_without_looping(connect):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))
    server.refuse_all = True

    with pytest.raises(PveAuthError) as caught:
        await pve.version()

    assert caught.value.message == "Authentication failed!"
    assert server.logins == ["password", "password"]


async def test_wrong_password_is_an_auth_error(connect):
    server = TicketServer()

    with pytest.raises(PveAuthError) as caught:
        await connect(server, auth=PasswordAuth(server.username, "wrong")).version()

    assert caught.value.message == "authentication failure"
    assert caught.value.path == "/access/ticket"
    assert len(server.requests) == 1


async def test_no_secret_reaches_logs_or_error_text(connect, clock):
    server = TicketServer()
    pve = connect(server, auth=PasswordAuth(server.username, server.password))

    with structlog.testing.capture_logs() as logs:
        await pve.version()
        server.revoke()
        await pve.version()
        clock.advance(110 * 60)
        await pve.version()
        server.refuse_all = True
        with pytest.raises(PveAuthError) as caught:
            await pve.version()

    secrets = [server.password, *server.live.values(), *(t.split("::")[1] for t in server.live)]
    text = repr(logs) + str(caught.value) + repr(caught.value) + repr(pve)
    assert logs  # something was logged
    assert not [secret for secret in secrets if secret in text]


# -- tasks ---------------------------------------------------------------------------------------


async def test_upid_travels_raw_in_the_url_path(connect):
    server = TaskServer(UPID_OK, [stopped("OK")], ["TASK OK"])

    await connect(server).task_status(UPID_OK)

    assert server.requests[0].url.raw_path == f"/api2/json/nodes/pve1/tasks/{UPID_OK}/status".encode()


async def test_wait_task_polls_with_backoff_and_reports_progress(connect, clock):
    server = TaskServer(
        UPID_OK, [running(), running(), running(), stopped("WARNINGS: 1")], ["TASK WARNINGS: 1"]
    )
    seen = []

    final = await connect(server).wait_task(UPID_OK, progress=seen.append)

    assert final.ok and final.exitstatus == "WARNINGS: 1"
    assert [status.status for status in seen] == ["running", "running", "running", "stopped"]
    assert clock.sleeps == [0.2, 0.4, 0.8]
    assert all("/log" not in r.url.path for r in server.requests)


async def test_failed_task_raises_with_its_log_tail(connect):
    log = [f"line {n}" for n in range(1, 30)] + ["TASK ERROR: VM is locked (backup)"]
    server = TaskServer(UPID_FAIL, [running(), stopped("VM is locked (backup)")], log)

    with pytest.raises(PveTaskFailed) as caught:
        await connect(server).wait_task(UPID_FAIL)

    assert caught.value.upid == UPID_FAIL
    assert caught.value.exitstatus == "VM is locked (backup)"
    assert caught.value.log_tail == tuple(log[-20:])
    assert caught.value.lock == "backup"
    assert (
        server.requests[-1].url.path == f"/api2/json/nodes/pve2/tasks/{UPID_FAIL}/log"
    )  # node from the UPID


async def test_log_tail_of_a_long_log_reads_just_the_end(connect):
    log = [f"copy {n}%" for n in range(119)] + ["TASK ERROR: clone failed: no space left"]
    server = TaskServer(UPID_FAIL, [stopped("clone failed: no space left")], log)

    with pytest.raises(PveTaskFailed) as caught:
        await connect(server).wait_task(UPID_FAIL)

    pages = [dict(r.url.params) for r in server.requests if r.url.path.endswith("/log")]
    assert pages == [{"start": "0", "limit": "50"}, {"start": "100", "limit": "20"}]
    assert caught.value.log_tail == tuple(log[-20:])


async def test_task_log_returns_lines_and_total(connect):
    server = TaskServer(UPID_OK, [stopped("OK")], ["a", "b", "c", "TASK OK"])

    lines, total = await connect(server).task_log(UPID_OK, start=1, limit=2)

    assert [(line.n, line.t) for line in lines] == [(2, "b"), (3, "c")]
    assert total == 4


async def test_wait_task_gives_up_after_the_timeout(connect, clock):
    server = TaskServer(UPID_OK, [running()], [])

    with pytest.raises(PveTaskTimeout) as caught:
        await connect(server).wait_task(UPID_OK, timeout=1.0)

    assert caught.value.upid == UPID_OK
    assert sum(clock.sleeps) == pytest.approx(1.0)
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.4])


# -- concurrency and lifecycle -------------------------------------------------------------------


async def test_requests_to_one_node_are_capped(connect):
    probe = ConcurrencyProbe()
    pve = connect(probe, node_concurrency=2)

    calls = [asyncio.create_task(pve.get(f"/nodes/{node}/status")) for node in ["pve1"] * 5 + ["pve2"] * 2]
    await probe.wait_for_in_flight("pve1", 2)
    await probe.wait_for_in_flight("pve2", 2)
    for _ in range(20):  # give the other pve1 calls every chance to slip past the limit
        await asyncio.sleep(0)
    assert probe.in_flight["pve1"] == 2
    probe.release()
    results = await asyncio.gather(*calls)

    assert [result["node"] for result in results] == ["pve1"] * 5 + ["pve2"] * 2
    assert probe.peak == {"pve1": 2, "pve2": 2}


async def test_closed_client_refuses_calls():
    async with PveClient(PVE_URL, auth=TokenAuth(TOKEN), transport=httpx.MockTransport(Scripted())) as pve:
        pass

    with pytest.raises(RuntimeError, match="closed"):
        await pve.get("/version")
