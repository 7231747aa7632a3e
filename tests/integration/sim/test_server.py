"""The simulator's HTTP(S) server over real sockets on 127.0.0.1, with a tiny ASGI app of its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import ipaddress
import json
import re
import socket
import ssl
from pathlib import Path

import httpx
import pytest
import requests
from cryptography import x509

from autovibe.sim.certs import ensure_self_signed, fingerprint_of_pem, server_ssl_context
from autovibe.sim.errors import DropConnection
from autovibe.sim.server import BackgroundServer, ServerLimits, reason_phrase, serve

MIB = 1024 * 1024
UPID = "UPID:pve1:0000ABCD:00001234:65A1B2C3:qmclone:100:root@pam!tok:"


async def app(scope, receive, send):
    """Echoes the scope as JSON; a few paths misbehave on purpose."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/drop":
        raise DropConnection
    if path == "/boom":
        raise RuntimeError("boom in the app")
    if path == "/silent":
        return
    if path == "/reason":
        await send({"type": "http.response.start", "status": 400, "headers": [], "reason": scope["reason"]})
        await send({"type": "http.response.body", "body": b'{"data":null}'})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    echo = {
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "server": list(scope["server"]),
        "client": list(scope["client"]),
        "body_len": len(body),
    }
    payload = json.dumps(echo).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def reason_app(reason):
    async def with_reason(scope, receive, send):
        scope["reason"] = reason
        await app(scope, receive, send)

    return with_reason


@pytest.fixture
def server():
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture
def tls_files(tmp_path):
    cert, key = tmp_path / "sim.crt", tmp_path / "sim.key"
    fingerprint = ensure_self_signed(cert, key)
    return cert, key, fingerprint


@pytest.fixture
def tls_server(tls_files):
    cert, key, _ = tls_files
    with BackgroundServer(app, ssl_context=server_ssl_context(cert, key)) as running:
        yield running


def raw_exchange(port, data):
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


# ---- reason phrase ---------------------------------------------------------------------------------


def test_the_apps_reason_becomes_the_reason_phrase_clients_show():
    with BackgroundServer(reason_app("Parameter verification failed.\n")) as srv:
        resp = requests.get(f"{srv.url}/reason", timeout=10)
    assert resp.status_code == 400
    assert resp.reason == "Parameter verification failed."
    assert resp.json() == {"data": None}


def test_without_a_reason_the_standard_phrase_is_sent(server):
    resp = requests.get(f"{server.url}/echo", timeout=10)
    assert (resp.status_code, resp.reason) == (200, "OK")
    assert resp.headers["server"] == "pve-api-daemon/3.0"


def test_a_hostile_reason_is_cut_to_one_printable_latin1_line():
    reason = "VM 100 \x00is\tlocked (snapshot) \u20ac caf\u00e9" + "x" * 300 + "\r\nHTTP/1.1 200 OK"
    with BackgroundServer(reason_app(reason)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/reason")
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
    assert resp.status == 400
    assert resp.reason.startswith("VM 100 ?is?locked (snapshot) ? caf\u00e9xxx")
    assert len(resp.reason) == 200
    assert "HTTP/1.1" not in resp.reason


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (401, "No ticket", b"No ticket"),
        (500, "\n\n", b"Internal Server Error"),
        (501, None, b"Not Implemented"),
        (596, None, b""),
        (
            403,
            b"Permission check failed (/vms/100, VM.Allocate)",
            b"Permission check failed (/vms/100, VM.Allocate)",
        ),
    ],
)
def test_reason_phrase_falls_back_to_the_standard_text(status, reason, expected):
    assert reason_phrase(status, reason) == expected


# ---- scope and connections ---------------------------------------------------------------------------


def test_scope_carries_what_asgi_apps_expect(server):
    resp = requests.post(
        f"{server.url}/api2/json/nodes?x=1&y=a%20b", data=b"abc", headers={"X-Mixed-Case": "V"}, timeout=10
    )
    echo = resp.json()
    assert echo["asgi"]["version"] == "3.0"
    assert (echo["http_version"], echo["method"], echo["scheme"]) == ("1.1", "POST", "http")
    assert (echo["path"], echo["root_path"], echo["query_string"]) == ("/api2/json/nodes", "", "x=1&y=a%20b")
    assert ["x-mixed-case", "V"] in echo["headers"]
    assert echo["server"] == ["127.0.0.1", server.port]
    assert echo["client"][0] == "127.0.0.1"
    assert echo["body_len"] == 3


@pytest.mark.parametrize(
    "sent",
    [
        f"/api2/json/nodes/pve1/tasks/{UPID}/status",
        "/api2/json/nodes/pve1/tasks/"
        + UPID.replace(":", "%3A").replace("@", "%40").replace("!", "%21")
        + "/status",
    ],
)
def test_raw_path_is_as_received_and_path_is_percent_decoded(server, sent):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", sent + "?start=0")
        echo = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert echo["raw_path"] == sent
    assert echo["path"] == f"/api2/json/nodes/pve1/tasks/{UPID}/status"
    assert echo["query_string"] == "start=0"


def test_keep_alive_serves_three_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        ports = []
        for _ in range(3):
            conn.request("GET", "/echo")
            resp = conn.getresponse()
            ports.append(json.loads(resp.read())["client"][1])
            assert not resp.will_close
    finally:
        conn.close()
    assert len(set(ports)) == 1


def test_pipelined_requests_are_answered_in_order(server):
    request = (
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(server.port, request)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answer.index(b'"/first"') < answer.index(b'"/second"')


def test_an_idle_connection_is_closed_by_the_server():
    with BackgroundServer(app, limits=ServerLimits(idle_timeout_s=0.2)) as srv:
        answer = raw_exchange(srv.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    # One answer, then the server hung up on its own: raw_exchange only returns once the socket closes.
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_leaving_the_context_closes_open_connections_and_stops_listening():
    with BackgroundServer(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/echo")
            conn.getresponse().read()
            srv.close()
            assert conn.sock.recv(1) == b""  # the kept-alive connection was closed by the server
        finally:
            conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=10).close()


def test_a_port_in_use_fails_on_enter():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with (
            pytest.raises(RuntimeError, match="did not start"),
            BackgroundServer(app, port=taken.getsockname()[1]),
        ):
            pass


async def test_serve_reports_its_port_and_returns_when_stopped():
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, port=0, ready=ready.set_result, stop=stop))
    port = await ready
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{port}/echo")
    assert resp.json()["server"] == ["127.0.0.1", port]
    stop.set()
    await asyncio.wait_for(task, 10)


# ---- responses and failures ----------------------------------------------------------------------------


def test_a_streamed_body_is_sent_chunked(server):
    resp = requests.get(f"{server.url}/stream", timeout=10)
    assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.content == b"abc"


def test_head_gets_the_length_but_no_body(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("HEAD", "/echo")
        resp = conn.getresponse()
        assert resp.read() == b""
        assert int(resp.getheader("content-length")) > 0
    finally:
        conn.close()


def test_drop_connection_closes_without_an_answer(server):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/drop", timeout=10)
    with httpx.Client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{server.url}/drop")
    assert requests.get(f"{server.url}/echo", timeout=10).status_code == 200


def test_an_app_exception_is_a_logged_500_and_the_connection_lives_on(server, caplog):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/boom")
        failed = conn.getresponse()
        failed.read()
        conn.request("GET", "/echo")
        after = conn.getresponse()
        after.read()
    finally:
        conn.close()
    assert (failed.status, failed.reason) == (500, "Internal Server Error")
    assert after.status == 200
    assert "boom in the app" in caplog.text


def test_an_app_that_never_answers_gets_a_500(server):
    assert requests.get(f"{server.url}/silent", timeout=10).status_code == 500


def test_a_malformed_request_gets_400():
    with BackgroundServer(app) as srv:
        assert raw_exchange(srv.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_bodies_up_to_16_mib_pass_and_larger_ones_get_413(server):
    ok = requests.post(f"{server.url}/echo", data=b"x" * (16 * MIB), timeout=30)
    too_big = requests.post(f"{server.url}/echo", data=b"x" * (16 * MIB + 1), timeout=30)
    assert ok.json()["body_len"] == 16 * MIB
    assert (too_big.status_code, too_big.reason) == (413, "Request Entity Too Large")


def test_a_chunked_body_over_the_limit_gets_413():
    with BackgroundServer(app, limits=ServerLimits(max_body_bytes=1000)) as srv:
        small = requests.post(f"{srv.url}/echo", data=iter([b"a" * 500, b"b" * 500]), timeout=10)
        big = requests.post(f"{srv.url}/echo", data=iter([b"a" * 600, b"b" * 600]), timeout=10)
    assert small.json()["body_len"] == 1000
    assert big.status_code == 413


# ---- TLS -------------------------------------------------------------------------------------------------


def test_https_is_trusted_with_the_generated_certificate(tls_server, tls_files):
    cert, _, _ = tls_files
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
        echo = client.get(f"{tls_server.url}/echo").json()
    assert echo["scheme"] == "https"
    assert tls_server.url.startswith("https://127.0.0.1:")
    resp = requests.get(f"{tls_server.url}/echo", verify=str(cert), timeout=10)
    assert resp.status_code == 200


def test_https_reason_phrase_and_drop_work_too(tls_files):
    cert, key, _ = tls_files
    verify = ssl.create_default_context(cafile=str(cert))
    with (
        BackgroundServer(reason_app("No ticket"), ssl_context=server_ssl_context(cert, key)) as srv,
        httpx.Client(verify=verify) as client,
    ):
        assert client.get(f"{srv.url}/reason").reason_phrase == "No ticket"
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{srv.url}/drop")


def test_default_verification_rejects_the_self_signed_certificate(tls_server):
    with httpx.Client() as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{tls_server.url}/echo")


def test_the_served_certificate_has_the_returned_fingerprint(tls_server, tls_files):
    _, _, fingerprint = tls_files
    served = ssl.get_server_certificate(("127.0.0.1", tls_server.port)).encode()
    assert fingerprint_of_pem(served) == fingerprint
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint)


def test_server_context_refuses_tls_below_1_2(tls_files):
    cert, key, _ = tls_files
    assert server_ssl_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2


# ---- certificate files --------------------------------------------------------------------------------


def test_certificate_names_validity_and_key_mode(tls_files):
    cert_path, key_path, _ = tls_files
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "pve1", "pve2", "pve3"} <= set(san.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= set(
        san.get_values_for_type(x509.IPAddress)
    )
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=3640) < lifetime <= dt.timedelta(days=3650)
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_existing_files_are_reused(tls_files):
    cert, key, fingerprint = tls_files
    before = cert.read_bytes(), key.read_bytes()
    assert ensure_self_signed(cert, key, hostnames=["other"]) == fingerprint
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_a_missing_certificate_regenerates_both(tls_files):
    cert, key, fingerprint = tls_files
    cert.unlink()
    assert ensure_self_signed(cert, key) != fingerprint
    assert cert.exists()


def test_a_key_that_does_not_match_is_refused(tmp_path: Path, tls_files):
    cert, _, _ = tls_files
    ensure_self_signed(tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(ValueError, match="does not belong"):
        ensure_self_signed(cert, tmp_path / "b.key")


def test_custom_hostnames_and_bad_pem(tmp_path: Path):
    ensure_self_signed(tmp_path / "c.crt", tmp_path / "c.key", hostnames=["pve.example", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate((tmp_path / "c.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pve.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    with pytest.raises(ValueError):
        fingerprint_of_pem(b"not a certificate")
