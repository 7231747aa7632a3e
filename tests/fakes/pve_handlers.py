"""Small fakes for PveClient tests: MockTransport handlers, a manual clock, a tiny TLS server.

Each handler is a callable class (like ``App`` in httpx's tests/client/test_auth.py) that records
the requests it saw, so a test can assert on what the client sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PVE_URL = "https://pve1.example:8006"
UPID_OK = "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam!ci:"
UPID_FAIL = "UPID:pve2:0002F1C5:01A2B3C4:66F0A1B3:qmsnapshot:101:root@pam:"


# -- responses -----------------------------------------------------------------------------------


def ok(data: Any, *, total: int | None = None) -> httpx.Response:
    """PVE's success envelope."""
    body: dict[str, Any] = {"data": data}
    if total is not None:
        body["total"] = total
    return httpx.Response(200, json=body)


def api_error(status: int, message: str, *, errors: dict[str, str] | None = None, legacy: bool = False):
    """An error the way pveproxy sends it: reason phrase = first message line; PVE 8.4 also puts
    ``message`` into the JSON body, older hosts (``legacy``) do not."""
    body: dict[str, Any] = {"data": None}
    if errors:
        body["errors"] = errors
    if not legacy:
        body["message"] = message + "\n"
    reason = message.splitlines()[0].encode()
    return httpx.Response(status, json=body, extensions={"reason_phrase": reason})


def auth_rejected(reason: str = "Authentication failed!") -> httpx.Response:
    """A 401 from the auth handler: empty body, text only in the reason phrase."""
    return httpx.Response(401, content=b"", extensions={"reason_phrase": reason.encode()})


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


# -- clock ---------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    """Stands in for both ``clock`` and ``sleep``: sleeping advances the time and is recorded."""

    now: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- handlers ------------------------------------------------------------------------------------


class Scripted:
    """Answers requests with the scripted items in order. An item is a Response, or an httpx
    transport exception class, raised as if the network failed."""

    def __init__(self, *answers: httpx.Response | type[httpx.TransportError]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unscripted request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("scripted network failure", request=request)


class TicketServer:
    """``/access/ticket`` plus a few API paths, enforcing PVE's ticket rules (SEMANTICS §2).

    Every call needs a live ``PVEAuthCookie``; non-GET calls need the matching CSRF header.
    ``revoke()`` invalidates all tickets, as if they expired; with ``refuse_all`` every API call
    gets a 401. ``logins`` records "password" or "renewal" for each successful ``POST
    /access/ticket``. The handler yields to the event loop once per request so concurrent client
    calls interleave as they would over a network.
    """

    def __init__(self, username: str = "root@pam", password: str = "hunter2-secret") -> None:
        self.username = username
        self.password = password
        self.live: dict[str, str] = {}  # ticket -> csrf token
        self.logins: list[str] = []
        self.requests: list[httpx.Request] = []
        self.refuse_all = False
        self._serial = 0

    def revoke(self) -> None:
        self.live.clear()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(0)  # a scheduling point, not a delay
        path = request.url.path.removeprefix("/api2/json")
        if path == "/access/ticket" and request.method == "POST":
            return self._login(form_of(request))
        ticket = request.headers.get("cookie", "").removeprefix("PVEAuthCookie=")
        if ticket not in self.live or self.refuse_all:
            return auth_rejected("No ticket" if not ticket else "Authentication failed!")
        if request.method != "GET" and request.headers.get("csrfpreventiontoken") != self.live[ticket]:
            return auth_rejected("Permission denied - invalid csrf token")
        if path == "/version":
            return ok({"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a"})
        if path == "/nodes/pve1/qemu/100/status/start":
            return ok(UPID_OK)
        return api_error(501, f"Method '{request.method} {path}' not implemented")

    def _login(self, form: dict[str, list[str]]) -> httpx.Response:
        username, password = form.get("username", [""])[0], form.get("password", [""])[0]
        if username != self.username:
            return api_error(401, "authentication failure")
        if password == self.password:
            kind = "password"
        elif password in self.live:
            kind = "renewal"
        else:
            return api_error(401, "authentication failure")
        self._serial += 1
        ticket = f"PVE:{username}:{self._serial:08X}::c2lnbmF0dXJl{self._serial}"
        self.live[ticket] = f"{self._serial:08X}:csrf{self._serial}"
        self.logins.append(kind)
        return ok(
            {"username": username, "ticket": ticket, "CSRFPreventionToken": self.live[ticket], "cap": {}}
        )


class TaskServer:
    """A task's status and log. ``statuses`` are served in order, the last one repeatedly."""

    def __init__(self, upid: str, statuses: list[dict[str, Any]], log: list[str]) -> None:
        self.upid = upid
        self.statuses = statuses
        self.log = log
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raw = request.url.raw_path.decode().split("?")[0].removeprefix("/api2/json")
        node = self.upid.split(":")[1]
        base = f"/nodes/{node}/tasks/{self.upid}"
        if raw == f"{base}/status":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return ok(
                {
                    "upid": self.upid,
                    "node": node,
                    "type": "qmstart",
                    "id": "100",
                    "user": "root@pam",
                    "starttime": 1727000000,
                    "pid": 192964,
                    **status,
                }
            )
        if raw == f"{base}/log":
            start, limit = int(request.url.params["start"]), int(request.url.params["limit"])
            lines = [{"n": i + 1, "t": text} for i, text in enumerate(self.log)][start : start + limit]
            return ok(lines, total=len(self.log))
        return api_error(400, "Parameter verification failed.", errors={"upid": "no such task"})


def running() -> dict[str, Any]:
    return {"status": "running"}


def stopped(exitstatus: str) -> dict[str, Any]:
    return {"status": "stopped", "exitstatus": exitstatus}


class ConcurrencyProbe:
    """An async handler that holds every request until ``release()``, counting in-flight requests
    per node so a test can see the per-node limit."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.gate = asyncio.Event()
        self.arrived = asyncio.Condition()

    def release(self) -> None:
        self.gate.set()

    async def wait_for_in_flight(self, node: str, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.in_flight[node] >= count)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        node = request.url.path.split("/")[4]
        async with self.arrived:
            self.in_flight[node] += 1
            self.peak[node] = max(self.peak[node], self.in_flight[node])
            self.arrived.notify_all()
        await self.gate.wait()
        self.in_flight[node] -= 1
        return ok({"node": node})


# -- TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    pem: bytes
    key_pem: bytes
    der: bytes

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        cert.write_bytes(self.pem)
        key.write_bytes(self.key_pem)
        return cert, key


def make_certificate(common_name: str, *, issuer: Certificate | None = None, ca: bool = False) -> Certificate:
    """A certificate for 127.0.0.1, self-signed or signed by ``issuer`` (as PVE's pve-root-ca signs
    each node's pve-ssl.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    signer_key = key
    issuer_name = subject
    if issuer is not None:
        signer_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
        issuer_name = x509.load_pem_x509_certificate(issuer.pem).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())  # type: ignore[arg-type]
    return Certificate(
        pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        der=cert.public_bytes(serialization.Encoding.DER),
    )


class TinyTlsServer:
    """An HTTPS server on 127.0.0.1 that answers every request with ``GET /version`` data and closes
    the connection. ``use()`` swaps the certificate for later handshakes. It counts connections and
    requests, so a test can see that the certificate probe sent nothing."""

    def __init__(self, folder: Path, cert: Certificate, chain: Certificate | None = None) -> None:
        self.folder = folder
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.connections = 0
        self.requests = 0
        self._serial = 0
        self._server: asyncio.Server | None = None
        self.use(cert, chain)

    def use(self, cert: Certificate, chain: Certificate | None = None) -> None:
        self._serial += 1
        cert_path, key_path = cert.write(self.folder, f"server-{self._serial}")
        if chain is not None:
            cert_path.write_bytes(cert.pem + chain.pem)
        self.context.load_cert_chain(cert_path, key_path)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    async def __aenter__(self) -> TinyTlsServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        self.requests += 1
        body = json.dumps({"data": {"version": "8.4.1", "release": "8.4", "repoid": "tls"}}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        try:
            await writer.drain()
        finally:
            writer.close()
