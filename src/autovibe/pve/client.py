"""The async PVE API client.

One ``PveClient`` per PVE cluster endpoint, shared by all services. It speaks to real PVE over
HTTPS, or to the simulator through an injected ``httpx.ASGITransport``; the code path is the same.
httpx's exceptions are translated into ``PveError`` subclasses in exactly one place,
``translate_errors``, so callers never import httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
import structlog
from pydantic import TypeAdapter, ValidationError

from autovibe.pve.auth import TICKET_PATH, PveAuth, TicketSession, TokenAuth
from autovibe.pve.breaker import CircuitBreaker
from autovibe.pve.config import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    DEFAULT_TLS,
    PollPolicy,
    PveTimeouts,
    Retry,
    TlsTrust,
)
from autovibe.pve.errors import (
    PveConnectError,
    PveProtocolError,
    PveTimeout,
    PveTlsError,
    PveTransportError,
    error_from_response,
)
from autovibe.pve.models import ClusterResource, NodeInfo, PveVersion, parse_model, parse_models
from autovibe.pve.retry import retrying
from autovibe.pve.tasks import LOG_TAIL_LINES, TaskLogLine, TaskStatus, Upid, wait_for_task
from autovibe.pve.tls import resolve_verify
from autovibe.pve.wire import Envelope, FormValue, encode_params, node_of_path, unwrap_envelope

__all__ = ["API_PREFIX", "PveClient", "RequestObservation", "translate_errors"]

API_PREFIX = "/api2/json"

# pveproxy drops idle keep-alive connections after about 5 s; expiring ours first avoids
# sending a request onto a connection the server is closing.
_KEEPALIVE_EXPIRY = 4.0
_log = structlog.get_logger("autovibe.pve")
_TLS_HINT = "trust the host with its CA bundle or its pinned certificate fingerprint (pvenode cert info)"


@dataclass(frozen=True, slots=True)
class RequestObservation:
    """One HTTP attempt the client made, as handed to ``PveClient``'s ``observer``.

    Every attempt is reported: each retry of a GET, the ticket login, the repeat after a rejected
    ticket. ``path`` is the API path after ``/api2/json`` without parameters, as the caller wrote it
    (node names, VMIDs and UPIDs included). ``status`` is the HTTP status, or None when no answer
    came back. ``error`` is None for a 1xx-3xx answer, ``"http"`` for a 4xx/5xx answer, and for no
    answer the transport failure: ``"timeout"``, ``"connect"``, ``"tls"``, ``"protocol"`` or
    ``"transport"``. ``elapsed_s`` runs from sending the request to the whole answer (or the failure).
    """

    method: str
    path: str
    status: int | None
    elapsed_s: float
    error: str | None


def _transport_kind(exc: PveTransportError) -> str:
    if isinstance(exc, PveTimeout):
        return "timeout"
    if isinstance(exc, PveTlsError):
        return "tls"
    if isinstance(exc, PveConnectError):
        return "connect"
    if isinstance(exc, PveProtocolError):
        return "protocol"
    return "transport"


@contextlib.contextmanager
def translate_errors(method: str, path: str) -> Iterator[None]:
    """Map httpx and socket exceptions raised inside the block to ``PveTransportError`` kinds."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise PveTimeout(f"timed out ({type(exc).__name__})", method=method, path=path) from exc
    except httpx.ConnectError as exc:
        if _caused_by_ssl(exc):
            raise PveTlsError(
                f"TLS handshake failed: {exc}", method=method, path=path, hint=_TLS_HINT
            ) from exc
        raise PveConnectError(f"cannot connect: {exc}", method=method, path=path) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise PveConnectError(f"connection lost ({type(exc).__name__})", method=method, path=path) from exc
    except httpx.DecodingError as exc:
        raise PveProtocolError(f"undecodable answer: {exc}", method=method, path=path) from exc
    except httpx.HTTPError as exc:
        raise PveTransportError(f"{type(exc).__name__}: {exc}", method=method, path=path) from exc
    # The certificate probe and CA bundle loading use the socket and ssl modules directly.
    except TimeoutError as exc:
        raise PveTimeout("timed out fetching the certificate", method=method, path=path) from exc
    except ssl.SSLError as exc:
        raise PveTlsError(f"TLS failed: {exc}", method=method, path=path) from exc
    except OSError as exc:
        raise PveConnectError(f"cannot connect: {exc}", method=method, path=path) from exc


def _caused_by_ssl(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PveClient:
    """Async client for one PVE API endpoint.

    ``base_url`` is the host, like ``https://pve1.example:8006``; ``/api2/json`` is added. Use as
    ``async with PveClient(...) as pve:`` or call ``aclose()``. Raw calls take a path and keyword
    parameters; names PVE spells with a dash go through a dict::

        upid = await pve.post("/nodes/pve1/qemu/100/status/start")
        await pve.wait_task(upid)
        await pve.delete("/nodes/pve1/qemu/100", purge=True, **{"destroy-unreferenced-disks": True})

    GETs are retried per ``retry``; other methods never are. ``transport`` replaces the network
    (``httpx.ASGITransport`` for the simulator, ``httpx.MockTransport`` in tests); TLS settings
    then do not apply. ``sleep`` and ``clock`` are injectable so tests need not wait.
    ``observer`` is called with a ``RequestObservation`` after every HTTP attempt, on the event
    loop, so it must be quick (update a metric); if it raises, the error is logged and the request
    goes on as if nothing happened.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: PveAuth,
        tls: TlsTrust = DEFAULT_TLS,
        timeouts: PveTimeouts = DEFAULT_TIMEOUTS,
        retry: Retry = DEFAULT_RETRY,
        node_concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        observer: Callable[[RequestObservation], None] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        root = base_url.rstrip("/").removesuffix(API_PREFIX)
        try:
            url = httpx.URL(root)
        except httpx.InvalidURL:
            url = httpx.URL()
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must look like https://host:8006, got {base_url!r}")
        if node_concurrency < 1:
            raise ValueError("node_concurrency must be at least 1")
        self._api_base = root + API_PREFIX
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._auth = auth
        self._token = auth if isinstance(auth, TokenAuth) else None
        self._tickets = None if isinstance(auth, TokenAuth) else TicketSession(auth, clock=clock)
        self._tls = tls
        self._timeouts = timeouts
        self._retry = retry
        self._node_concurrency = node_concurrency
        self._node_slots: dict[str, asyncio.Semaphore] = {}
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._observer = observer
        self.breaker = breaker
        self.resources_ttl_s = 0.0
        self._resources: dict[str | None, tuple[float, Any]] = {}
        self._resources_pending: dict[tuple[str | None, int], asyncio.Future[Any]] = {}
        self._writes = 0
        self._http: httpx.AsyncClient | None = None
        self._build_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PveClient({self._api_base!r}, auth={self._auth!r})"

    @property
    def observer(self) -> Callable[[RequestObservation], None] | None:
        """Called with a :class:`RequestObservation` after every HTTP attempt (metrics plug in here)."""
        return self._observer

    @observer.setter
    def observer(self, observer: Callable[[RequestObservation], None] | None) -> None:
        self._observer = observer

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections. The client cannot be used afterwards."""
        self._closed = True
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- raw API -------------------------------------------------------------------------------

    async def get(self, path: str, /, **params: Any) -> Any:
        """``GET /api2/json{path}`` and return the envelope's ``data``."""
        return (await self.request("GET", path, params)).data

    async def get_with_total(self, path: str, /, **params: Any) -> tuple[Any, int | None]:
        """Like ``get`` but also return the envelope's ``total`` (task lists and logs set it)."""
        envelope = await self.request("GET", path, params)
        return envelope.data, envelope.total

    async def post(self, path: str, /, **params: Any) -> Any:
        """``POST`` form-encoded parameters; async PVE calls return a UPID string here."""
        return (await self.request("POST", path, params)).data

    async def put(self, path: str, /, **params: Any) -> Any:
        """``PUT`` form-encoded parameters."""
        return (await self.request("PUT", path, params)).data

    async def delete(self, path: str, /, **params: Any) -> Any:
        """``DELETE`` with parameters in the query string (PVE refuses a DELETE body with 501)."""
        return (await self.request("DELETE", path, params)).data

    async def request(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Envelope:
        """Send one API call and return the whole envelope.

        ``params``: ``None`` values are dropped, booleans sent as ``1``/``0``. Raises a
        ``PveApiError`` subclass for error answers and a ``PveTransportError`` subclass when no
        usable answer came back (after retries, for GET).
        """
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"API paths start with '/', got {path!r}")
        encoded = encode_params(params or {})
        if method != "GET":
            self._writes += 1  # answers shared before this write began are stale from now on
            self._resources.clear()
        if self.breaker is None:
            return await self._request(method, path, encoded)
        self.breaker.before(method, path)
        try:
            envelope = await self._request(method, path, encoded)
        except BaseException as exc:
            self.breaker.record(exc)
            raise
        self.breaker.record(None)
        return envelope

    async def _request(self, method: str, path: str, encoded: dict[str, FormValue]) -> Envelope:
        if method != "GET" or self._retry.attempts == 1:
            return await self._attempt(method, path, encoded)
        controller = retrying(self._retry, self._sleep, method, path)
        envelope: Envelope = await controller(self._attempt, method, path, encoded)
        return envelope

    # -- typed readers -------------------------------------------------------------------------

    async def version(self) -> PveVersion:
        """``GET /version``."""
        return parse_model(PveVersion, await self.get("/version"), "/version")

    async def nodes(self) -> list[NodeInfo]:
        """``GET /nodes``: every cluster node with its status and load."""
        return parse_models(NodeInfo, await self.get("/nodes"), "/nodes")

    async def cluster_resources(
        self, type: str | None = None, *, fresh: bool = False
    ) -> list[ClusterResource]:
        """``GET /cluster/resources``; ``type`` is ``vm``, ``storage``, ``node`` or ``sdn``.

        With ``resources_ttl_s`` (the hub sets it), answers younger than that are shared, and concurrent
        identical calls make one request: a hub serving many callers that list machines asks PVE once per
        period, not once per caller. Any write through this client drops the shared answers, so a caller
        never misses the effect of its own change. ``fresh`` always asks PVE (and shares that answer):
        for readers that pair the counters with the time they read them (the usage sampler)."""
        if self.resources_ttl_s <= 0:
            data = await self.get("/cluster/resources", type=type)
        else:
            data = await self._shared_resources(type, fresh=fresh)
        return parse_models(ClusterResource, data, "/cluster/resources")

    async def _shared_resources(self, type: str | None, *, fresh: bool) -> Any:
        now = time.monotonic()
        cached = self._resources.get(type)
        if not fresh and cached is not None and now - cached[0] < self.resources_ttl_s:
            return cached[1]
        generation = self._writes
        joined = None if fresh else self._resources_pending.get((type, generation))
        if joined is not None:  # the same read is on its way, and no write began since it left
            return await asyncio.shield(joined)
        pending = asyncio.ensure_future(self.get("/cluster/resources", type=type))
        self._resources_pending[(type, generation)] = pending
        try:
            data = await asyncio.shield(pending)
        finally:
            self._resources_pending.pop((type, generation), None)
        if generation == self._writes:  # no write began meanwhile: the answer may be shared
            self._resources[type] = (now, data)
        return data

    async def next_vmid(self) -> int:
        """``GET /cluster/nextid``: the lowest free VMID. PVE does not reserve it (SEMANTICS §7)."""
        data = await self.get("/cluster/nextid")
        try:
            return int(data)
        except (TypeError, ValueError):
            raise PveProtocolError(
                f"nextid is not a number: {data!r}", method="GET", path="/cluster/nextid"
            ) from None

    async def permissions(
        self, path: str | None = None, userid: str | None = None
    ) -> dict[str, dict[str, int]]:
        """``GET /access/permissions``: ``{acl path: {privilege: propagate flag}}`` for the caller,
        or for ``userid`` (a user or token id)."""
        data = await self.get("/access/permissions", path=path, userid=userid)
        adapter = TypeAdapter(dict[str, dict[str, int]])
        try:
            return adapter.validate_python(data)
        except ValidationError:
            raise PveProtocolError(
                "unexpected permissions shape", method="GET", path="/access/permissions"
            ) from None

    # -- tasks ---------------------------------------------------------------------------------

    async def task_status(self, upid: Upid | str) -> TaskStatus:
        """``GET /nodes/{node}/tasks/{upid}/status``, the node taken from the UPID."""
        parsed = _as_upid(upid)
        path = f"/nodes/{parsed.node}/tasks/{parsed.raw}/status"
        return parse_model(TaskStatus, await self.get(path), path)

    async def task_log(
        self, upid: Upid | str, start: int = 0, limit: int = 50
    ) -> tuple[list[TaskLogLine], int]:
        """One page of a task's log and the log's total line count. ``start`` counts from 0."""
        parsed = _as_upid(upid)
        path = f"/nodes/{parsed.node}/tasks/{parsed.raw}/log"
        data, total = await self.get_with_total(path, start=start, limit=limit)
        lines = parse_models(TaskLogLine, data, path)
        return lines, total if total is not None else start + len(lines)

    async def task_log_tail(self, upid: Upid | str, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
        """The last ``lines`` lines of a task log (one request for short logs, two for long ones)."""
        page, total = await self.task_log(upid, 0, max(lines, 50))
        if total > len(page):
            page, total = await self.task_log(upid, max(total - lines, 0), lines)
        return tuple(line.t for line in page[-lines:])

    async def wait_task(
        self,
        upid: Upid | str,
        *,
        progress: Callable[[TaskStatus], None] | None = None,
        # Measured with the injected clock, which asyncio.timeout cannot use.
        timeout: float = 3600,  # noqa: ASYNC109
        poll: PollPolicy = DEFAULT_POLL,
    ) -> TaskStatus:
        """Poll a task until it stops and return its final status.

        ``progress`` is called with every polled status. Raises ``PveTaskFailed`` (exit status and
        the last log lines) unless the task ends ``OK`` or ``WARNINGS: N``, and ``PveTaskTimeout``
        after ``timeout`` seconds; the task itself is not stopped then.
        """
        return await wait_for_task(
            self,
            _as_upid(upid),
            sleep=self._sleep,
            clock=self._clock,
            progress=progress,
            timeout=timeout,
            poll=poll,
        )

    # -- plumbing ------------------------------------------------------------------------------

    async def _attempt(self, method: str, path: str, params: dict[str, FormValue]) -> Envelope:
        http = await self._http_client(method, path)
        async with self._node_slot(path):
            response = await self._send_authenticated(http, method, path, params)
        if response.is_success:
            return unwrap_envelope(response.content, method=method, path=path)
        raise error_from_response(
            method, path, response.status_code, response.reason_phrase, response.content
        )

    async def _send_authenticated(
        self, http: httpx.AsyncClient, method: str, path: str, params: dict[str, FormValue]
    ) -> httpx.Response:
        if self._token is not None:
            return await self._send(http, method, path, params, self._token.headers())
        assert self._tickets is not None  # one of the two is always set in __init__
        ticket = await self._tickets.current(self._login)
        response = await self._send(http, method, path, params, ticket.headers(method))
        if response.status_code != 401:
            return response
        # SEMANTICS §1: a 401 comes from the auth handler before any API handler runs, so PVE did
        # nothing with this request and sending it once more is safe, even for a POST.
        _log.info("pve.ticket_rejected", method=method, path=path)
        ticket = await self._tickets.replace(self._login, ticket)
        return await self._send(http, method, path, params, ticket.headers(method))

    async def _login(self, form: Mapping[str, str]) -> Any:
        http = await self._http_client("POST", TICKET_PATH)
        response = await self._send(http, "POST", TICKET_PATH, dict(form), {})
        if not response.is_success:
            raise error_from_response(
                "POST", TICKET_PATH, response.status_code, response.reason_phrase, response.content
            )
        return unwrap_envelope(response.content, method="POST", path=TICKET_PATH).data

    async def _send(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        params: Mapping[str, FormValue],
        headers: Mapping[str, str],
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            with translate_errors(method, path):
                if method in ("GET", "DELETE"):
                    request = http.build_request(method, path, params=params, headers=headers)
                else:
                    request = http.build_request(method, path, data=params, headers=headers)
                response = await http.send(request)
        except PveTransportError as exc:
            self._observe(method, path, None, time.perf_counter() - started, _transport_kind(exc))
            raise
        elapsed = time.perf_counter() - started
        status = response.status_code
        _log.debug(
            "pve.response", method=method, path=path, status=status, elapsed_ms=round(elapsed * 1000, 1)
        )
        self._observe(method, path, status, elapsed, "http" if status >= 400 else None)
        return response

    def _observe(self, method: str, path: str, status: int | None, elapsed: float, error: str | None) -> None:
        if self._observer is None:
            return
        try:
            self._observer(RequestObservation(method, path, status, elapsed, error))
        except Exception:
            # Metrics must never break a request; the traceback names the faulty observer.
            _log.warning("pve.observer_failed", method=method, path=path, exc_info=True)

    async def _http_client(self, method: str, path: str) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("this PveClient has been closed")
        if self._http is not None:
            return self._http
        async with self._build_lock:
            if self._http is None:
                with translate_errors(method, path):
                    verify = await self._verify()
                self._http = httpx.AsyncClient(
                    base_url=self._api_base,
                    transport=self._transport,
                    verify=verify,
                    timeout=httpx.Timeout(
                        connect=self._timeouts.connect,
                        read=self._timeouts.read,
                        write=self._timeouts.write,
                        pool=self._timeouts.pool,
                    ),
                    limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_EXPIRY),
                    headers={"Accept": "application/json", "User-Agent": "autovibe"},
                    # Settings are read once at the edge (DESIGN §2); no proxy or CA variables here.
                    trust_env=False,
                )
            return self._http

    async def _verify(self) -> ssl.SSLContext | bool:
        if self._transport is not None:
            return True  # the injected transport owns the connection; nothing to verify here
        return await resolve_verify(self._tls, self._host, self._port, connect_timeout=self._timeouts.connect)

    def _node_slot(self, path: str) -> contextlib.AbstractAsyncContextManager[Any]:
        node = node_of_path(path)
        if node is None:
            return contextlib.nullcontext()
        slot = self._node_slots.get(node)
        if slot is None:
            slot = self._node_slots[node] = asyncio.Semaphore(self._node_concurrency)
        return slot


def _as_upid(upid: Upid | str) -> Upid:
    return upid if isinstance(upid, Upid) else Upid.parse(upid)
