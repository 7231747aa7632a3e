"""A small asyncio HTTP/1.1 server for ASGI apps, built on h11, that can say what pveproxy says.

Why not uvicorn: PVE puts its error text in the HTTP reason phrase (``HTTP/1.1 400 Parameter
verification failed.``; for 401 *only* there) and proxmoxer shows exactly that text, but ASGI has no field
for the reason phrase, so uvicorn always sends the standard one. The contract with the app:

- A non-standard ``"reason"`` (str) in ``http.response.start`` becomes the reason phrase: its first line,
  non-printable or non-latin-1 characters replaced by ``?``, at most 200 characters. Without it (or when
  nothing is left) the standard phrase is sent.
- Raising :class:`autovibe.sim.errors.DropConnection` closes the socket without an answer (injected
  dropped connections). Any other exception is logged and answered with 500 if nothing was sent yet;
  otherwise the connection is closed mid-response.

Connections are persistent (keep-alive, pipelining) and closed when idle for
``ServerLimits.idle_timeout_s``, like pveproxy. Request bodies are read completely before the app runs,
up to ``ServerLimits.max_body_bytes`` (413 beyond). Responses carry Content-Length when the body comes in
one message and are chunked when the app streams (``more_body``). The app runs on the server's event
loop; no lifespan events are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11

from autovibe.sim.errors import DropConnection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 200
# What pveproxy sends; some clients log it, none should depend on it.
SERVER_HEADER = b"pve-api-daemon/3.0"
_READ_CHUNK = 65536
_NOT_PRINTABLE_LATIN1 = re.compile(r"[^\x20-\x7e\xa0-\xff]")


@dataclass(frozen=True)
class ServerLimits:
    """Resource limits of one server.

    ``idle_timeout_s``: close a keep-alive connection that sends no (complete) request head for this long.
    ``read_timeout_s``: give up on a request body that stalls for this long.
    ``linger_s`` / ``linger_bytes``: after refusing a request (413, 400) keep reading and discarding what
    the client still sends, so that closing does not reset the connection before it read our answer.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    idle_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    linger_s: float = 5.0
    linger_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = ServerLimits()


def reason_phrase(status: int, reason: object = None) -> bytes:
    """The reason phrase sent for ``status``: the sanitised ``reason`` if it has any text, else standard.

    >>> reason_phrase(400, "Parameter verification failed.\\n")
    b'Parameter verification failed.'
    """
    if isinstance(reason, bytes):
        reason = reason.decode("latin-1")
    if isinstance(reason, str):
        lines = reason.strip().splitlines()
        first = lines[0] if lines else ""
        text = _NOT_PRINTABLE_LATIN1.sub("?", first)[:MAX_REASON_CHARS].strip()
        if text:
            return text.encode("latin-1")
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:  # a non-standard code such as PVE's 596 has no standard phrase
        return b""


class _TooLarge(Exception):
    """Control flow inside a connection: the request body exceeds the limit."""


class _Cycle:
    """One request/response exchange: the ``receive``/``send`` pair handed to the app."""

    def __init__(self, conn: _Connection, body: bytes, head: bool) -> None:
        self._conn = conn
        self._body: bytes | None = body
        self._head = head
        self._start: Message | None = None
        self._done = asyncio.Event()
        self.wire_started = False  # response head already written to the socket
        self.complete = False

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # ASGI: after the whole body, the next message is a disconnect, due once the response is sent.
        await self._done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start" and self._start is None:
            self._start = message
        elif kind == "http.response.body" and self._start is not None and not self.complete:
            await self._send_body(bytes(message.get("body", b"")), bool(message.get("more_body", False)))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in this response state")

    async def _send_body(self, body: bytes, more: bool) -> None:
        assert self._start is not None  # checked by send()
        if not self.wire_started:
            status = int(self._start["status"])
            headers = [(bytes(k).lower(), bytes(v)) for k, v in self._start.get("headers", [])]
            names = {k for k, _ in headers}
            if not more and b"content-length" not in names and b"transfer-encoding" not in names:
                headers.append((b"content-length", str(len(body)).encode()))
            reason = reason_phrase(status, self._start.get("reason"))
            await self._conn.write(_response(status, headers, reason))
            self.wire_started = True
        if body and not self._head:
            await self._conn.write(h11.Data(data=body))
        if not more:
            await self._conn.write(h11.EndOfMessage())
            self.complete = True
            self._done.set()

    def finish(self) -> None:
        """Wake an app still waiting in ``receive`` (the exchange is over either way)."""
        self._done.set()


class _Connection:
    """Serves requests on one accepted socket until the peer leaves, idles out or breaks the protocol."""

    def __init__(
        self,
        app: ASGIApp,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: ServerLimits,
    ) -> None:
        self._app = app
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self._h11 = h11.Connection(h11.SERVER)
        self._tls = writer.get_extra_info("sslcontext") is not None

    async def run(self) -> None:
        try:
            while await self._serve_one():
                self._h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint)
        except (TimeoutError, ConnectionError, ssl.SSLError, h11.LocalProtocolError):
            pass  # idle timeout, peer gone, or we cannot answer any more: just close
        finally:
            await self._close()

    async def write(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def _next_event(self, within_s: float) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while (event := self._h11.next_event()) is h11.NEED_DATA:
            async with asyncio.timeout(within_s):
                data = await self._reader.read(_READ_CHUNK)
            self._h11.receive_data(data)  # b"" tells h11 the peer closed
        return event

    async def _serve_one(self) -> bool:
        """Answer one request; True if the connection can carry another."""
        event = await self._next_event(self._limits.idle_timeout_s)
        if not isinstance(event, h11.Request):
            return False  # ConnectionClosed
        try:
            body = await self._read_body(event)
        except _TooLarge:
            await self._refuse(413)
            return False
        cycle = _Cycle(self, body, head=event.method == b"HEAD")
        try:
            await self._app(self._scope(event), cycle.receive, cycle.send)
        except DropConnection:
            return False
        except Exception:
            if self._writer.is_closing():
                return False  # the failure was the client going away under a send
            log.exception("ASGI app failed on %s %s", event.method.decode(), event.target.decode())
            return await self._after_failure(cycle)
        finally:
            cycle.finish()
        if not cycle.complete:
            log.error("ASGI app returned without completing a response to %s", event.target.decode())
            return await self._after_failure(cycle)
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def _after_failure(self, cycle: _Cycle) -> bool:
        if cycle.wire_started:
            return False  # a half-sent response cannot be repaired; closing tells the client
        await self._simple_response(500, keep_alive=True)
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def _read_body(self, request: h11.Request) -> bytes:
        limit = self._limits.max_body_bytes
        for name, value in request.headers:
            if name == b"content-length" and int(value) > limit:
                raise _TooLarge
        if self._h11.they_are_waiting_for_100_continue:
            await self.write(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        size = 0
        while isinstance(event := await self._next_event(self._limits.read_timeout_s), h11.Data):
            size += len(event.data)
            if size > limit:
                raise _TooLarge
            chunks.append(bytes(event.data))
        if not isinstance(event, h11.EndOfMessage):
            raise ConnectionResetError("request body ended early")
        return b"".join(chunks)

    async def _refuse(self, status: int) -> None:
        """Answer an unusable request with a bare error status, then linger before the close."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, h11.LocalProtocolError):
            await self._simple_response(status, keep_alive=False)
            await self._linger()

    async def _simple_response(self, status: int, *, keep_alive: bool) -> None:
        headers = [(b"content-length", b"0")]
        if not keep_alive:
            headers.append((b"connection", b"close"))
        await self.write(_response(status, headers, reason_phrase(status)))
        await self.write(h11.EndOfMessage())

    async def _linger(self) -> None:
        # Closing a socket with unread bytes makes the kernel send RST, which can destroy our answer
        # before the client reads it (the client is typically still uploading the refused body). So
        # half-close (TLS cannot), then read and discard until the client closes too.
        if self._writer.can_write_eof():
            self._writer.write_eof()
        received = 0
        async with asyncio.timeout(self._limits.linger_s):
            while received < self._limits.linger_bytes and (data := await self._reader.read(_READ_CHUNK)):
                received += len(data)

    def _scope(self, request: h11.Request) -> Scope:
        raw_path, _, query = bytes(request.target).partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "https" if self._tls else "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(name), bytes(value)) for name, value in request.headers],
            "server": _address(self._writer.get_extra_info("sockname")),
            "client": _address(self._writer.get_extra_info("peername")),
        }

    async def _close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        finally:
            # No-op after a clean close; otherwise (a TLS peer that never says goodbye, or shutdown
            # cancelling us mid-close) it frees the socket now instead of warning at loop close.
            self._writer.transport.abort()


def _address(sockname: Any) -> tuple[str, int] | None:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return (str(sockname[0]), int(sockname[1]))
    return None


def _response(status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> h11.Response:
    names = {name for name, _ in headers}
    if b"date" not in names:
        headers = [*headers, (b"date", email.utils.formatdate(usegmt=True).encode("ascii"))]
    if b"server" not in names:
        headers = [*headers, (b"server", SERVER_HEADER)]
    return h11.Response(status_code=status, headers=headers, reason=reason)


async def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8006,
    ssl_context: ssl.SSLContext | None = None,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    limits: ServerLimits = DEFAULT_LIMITS,
) -> None:
    """Serve ``app`` on ``host:port`` (HTTPS when ``ssl_context`` is given) until ``stop`` is set.

    ``port=0`` picks a free port; ``ready(actual_port)`` is called once the socket listens (for a host
    name with several addresses, the port of the first socket). Without ``stop`` the server runs until
    the task is cancelled. On return every open connection has been closed.
    """
    stop = stop if stop is not None else asyncio.Event()
    handlers: set[asyncio.Task[Any]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        try:
            await _Connection(app, reader, writer, limits).run()
        finally:
            if task is not None:
                handlers.discard(task)

    server = await asyncio.start_server(on_connect, host, port, ssl=ssl_context)
    try:
        if ready is not None:
            ready(int(server.sockets[0].getsockname()[1]))
        await stop.wait()
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


class BackgroundServer:
    """Runs :func:`serve` in a daemon thread with its own event loop, for tests and embedding.

    Entering starts the server and waits until it listens (``port=0`` picks a free port, then readable
    as ``.port``); leaving stops it, closes its connections and joins the thread::

        with BackgroundServer(app) as server:
            requests.get(server.url + "/api2/json/version")
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: ServerLimits = DEFAULT_LIMITS,
    ) -> None:
        self.port = port
        self._app = app
        self._host = host
        self._ssl_context = ssl_context
        self._limits = limits
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``https://127.0.0.1:40123``."""
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        if self._thread is not None:
            raise RuntimeError("BackgroundServer can be entered only once")
        self._thread = threading.Thread(target=self._run, name="autovibe-sim-http", daemon=True)
        self._thread.start()
        self._listening.wait()  # set by ready() or, on a start-up failure, by _run's finally
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"simulator HTTP server did not start: {self._error}") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and wait for the thread; safe to call more than once."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the thread that called __enter__
            self._error = exc
        finally:
            self._listening.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await serve(
            self._app,
            host=self._host,
            port=self.port,
            ssl_context=self._ssl_context,
            ready=self._on_ready,
            stop=self._stop,
            limits=self._limits,
        )

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._listening.set()
