"""The simulator as an ASGI application: ``/api2/json/...`` the way pveproxy answers it.

One request goes: fault injection -> parameters (query + form/JSON body) -> route by the PVE schema ->
authentication -> schema validation -> replay simulated time -> permission check -> handler -> the
``{"data": ...}`` envelope. Errors take PVE's three shapes (see ``errors.py``); the HTTP reason phrase
carries the first line of the message through the ``reason`` extension key that ``server.py`` honours.
``/_sim/...`` (outside the PVE API) is the admin surface for tests: faults, the clock and load profiles.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import nullcontext
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from autovibe.sim import routes
from autovibe.sim.access import authenticate
from autovibe.sim.clock import SimClock
from autovibe.sim.cluster import Cluster
from autovibe.sim.errors import DropConnection, SimApiError, SimAuthError, param_error
from autovibe.sim.faults import FaultPlan
from autovibe.sim.persist import StateFile
from autovibe.sim.privileges import check_permissions
from autovibe.sim.registry import ROUTES, Call, Identity, Reply
from autovibe.sim.schema import ApiSchema, Endpoint
from autovibe.sim.validate import validate

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API_PREFIX = "/api2/json"
routes.load_all()


class SimApp:
    """An ASGI app serving one simulated PVE cluster.

    >>> sim = SimApp.open(None, speed=0)            # in memory, frozen clock
    >>> token = sim.ensure_token()                  # "root@pam!autovibe=<uuid>"
    >>> transport = httpx.ASGITransport(app=sim)    # or serve it: autovibe sim serve
    """

    def __init__(
        self,
        cluster: Cluster,
        clock: SimClock,
        *,
        state: StateFile | None = None,
        client_tokens: dict[str, str] | None = None,
        auth_failure_delay: float = 0.0,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.state = state
        self.schema = ApiSchema.load()
        self.client_tokens = client_tokens or {}
        # pveproxy answers every 401 after ~3 s to slow password guessing; off by default here.
        self.auth_failure_delay = auth_failure_delay

    @classmethod
    def open(
        cls, state_path: Path | None = None, *, speed: float = 1.0, seed: int = 0, nodes: int = 3
    ) -> SimApp:
        """A cluster persisted at ``state_path`` (created on first use), or a fresh one in memory."""
        state = StateFile(state_path) if state_path is not None else None
        if state is not None:
            with state.locked():
                if state.exists():
                    app = cls._from_saved(state.read(), state)
                    app.clock.speed = speed
                    return app
                clock = SimClock(speed=speed)
                app = cls(Cluster.default(nodes=nodes, now=clock.now(), seed=seed), clock, state=state)
                app.save()
                return app
        clock = SimClock(speed=speed)
        return cls(Cluster.default(nodes=nodes, now=clock.now(), seed=seed), clock)

    @classmethod
    def _from_saved(cls, data: dict[str, Any], state: StateFile | None) -> SimApp:
        return cls(
            Cluster.from_dict(data["cluster"]),
            SimClock.from_dict(data["clock"]),
            state=state,
            client_tokens=dict(data.get("client_tokens", {})),
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster.to_dict(),
            "clock": self.clock.to_dict(),
            "client_tokens": self.client_tokens,
        }

    def save(self) -> None:
        if self.state is not None:
            self.state.write(self.snapshot())

    def _reload_if_changed(self) -> None:
        if self.state is not None and self.state.exists() and self.state.changed_since_seen():
            fresh = self._from_saved(self.state.read(), self.state)
            speed = self.clock.speed
            self.cluster, self.clock, self.client_tokens = fresh.cluster, fresh.clock, fresh.client_tokens
            self.clock.speed = speed

    def ensure_token(self, userid: str = "root@pam", name: str = "autovibe") -> str:
        """A full-privilege API token for an in-process client, kept across runs of a persisted cluster.

        Returns ``USER@REALM!NAME=SECRET``. The secret is stored in the (0600) state file so the next
        process can use it; PVE itself keeps only a hash, and so does the simulated access state.
        """
        full = f"{userid}!{name}"
        with self.state.locked() if self.state else nullcontext():
            self._reload_if_changed()
            if full not in self.client_tokens:
                secret = str(self.cluster.access.add_token(userid, name))
                self.client_tokens[full] = secret
                self.save()
        return f"{full}={self.client_tokens[full]}"

    # ---- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method, path = scope["method"].upper(), scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith("/_sim/"):
            status, payload = self._admin(method, path, body)
            await _respond(send, status, payload, None)
            return
        try:
            status, payload = await self._api(method, path, scope.get("query_string", b""), headers, body)
        except SimAuthError as exc:
            if self.auth_failure_delay:
                await asyncio.sleep(self.auth_failure_delay)
            await _respond(send, 401, None, exc.message)
            return
        except SimApiError as exc:
            envelope: dict[str, Any] = {"data": None, "message": exc.message + "\n"}
            if exc.errors:
                envelope["errors"] = exc.errors
            await _respond(send, exc.status, envelope, exc.message.splitlines()[0] if exc.message else None)
            return
        await _respond(send, status, payload, None)

    async def _api(
        self, method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if not path.startswith(API_PREFIX + "/") and path != API_PREFIX:
            raise SimApiError(501, f"Method '{method} {path}' not implemented")
        api_path = path[len(API_PREFIX) :] or "/"
        fault = self.cluster.faults.match_request(method, api_path)
        if fault is not None:
            await _apply_fault(fault.kind, fault.latency_s, fault.message)
        params, json_body = _parse_params(method, headers, query, body)
        matched = self.schema.match(method, api_path)
        if matched is None or (method, matched[0].path) not in ROUTES:
            raise SimApiError(501, f"Method '{method} {api_path}' not implemented")
        endpoint, path_params = matched
        for key, value in path_params.items():
            if key in params and str(params[key]) != value:
                raise param_error(
                    {key: "duplicate parameter (already defined in URI) with conflicting values!"}
                )
        params.update(path_params)
        lock = self.state.locked() if self.state else nullcontext()
        with lock:
            self._reload_if_changed()
            data = self._dispatch(method, api_path, endpoint, params, json_body, headers)
            if method != "GET":
                self.save()
        return 200, data

    def _dispatch(
        self,
        method: str,
        api_path: str,
        endpoint: Endpoint,
        raw: dict[str, Any],
        json_body: bool,
        headers: dict[str, str],
    ) -> dict[str, Any]:
        now = self.clock.now()
        identity = self._identify(method, api_path, endpoint, headers, now)
        params = validate(endpoint, raw, json_body=json_body)
        if "node" in params and endpoint.path.startswith("/nodes/{node}"):
            self.cluster.node(params["node"])
        self.cluster.advance(now)
        if identity is not None:
            access, pools = self.cluster.access, self.cluster.pools
            check_permissions(access, identity, endpoint.permissions, params, pools=pools)
        call = Call(self.cluster, identity, params, now, method, api_path)
        result = ROUTES[(method, endpoint.path)].handler(call)
        if isinstance(result, Reply):
            envelope = {"data": result.data, **result.extra}
            if result.total is not None:
                envelope["total"] = result.total
            return envelope
        return {"data": result}

    def _identify(
        self, method: str, api_path: str, endpoint: Endpoint, headers: dict[str, str], now: float
    ) -> Identity | None:
        if (endpoint.permissions or {}).get("user") == "world":
            return None
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        cookies = {k: unquote(m.value) for k, m in cookie.items()}
        identity = authenticate(self.cluster.access, method=method, headers=headers, cookies=cookies, now=now)
        if identity.tokenid and not endpoint.allowtoken:
            raise SimApiError(
                403,
                f"Permission check failed (URI '{API_PREFIX}{api_path}' not available with API token, "
                "need proper ticket.)",
            )
        return identity

    # ---- /_sim admin ----------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body) if body else {}
            with self.state.locked() if self.state else nullcontext():
                self._reload_if_changed()
                result = self._admin_action(method, path, payload)
                if method != "GET":
                    self.save()
            return 200, {"data": result}
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"data": None, "message": f"{exc}\n"}

    def _admin_action(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        if path == "/_sim/faults":
            if method == "PUT":
                self.cluster.faults = FaultPlan.from_dict(payload)
            elif method == "DELETE":
                self.cluster.faults = FaultPlan(requests=[], tasks=[])
            return self.cluster.faults.to_dict()
        if path == "/_sim/load":
            return self._admin_load(method, payload)
        if path == "/_sim/clock":
            if method == "POST":
                if "speed" in payload:
                    self.clock.speed = float(payload["speed"])
                self.clock.advance(float(payload.get("advance", 0)))
                self.cluster.advance(self.clock.now())
            return {"now": self.clock.now(), "speed": self.clock.speed}
        raise KeyError(f"no simulator admin endpoint {method} {path}")

    def _admin_load(self, method: str, payload: Any) -> dict[str, Any]:
        now = self.clock.now()
        self.cluster.advance(now)  # a start that finished before now boots before the switch
        if method == "PUT":
            self.cluster.set_loads(_load_assignments(payload), now)
        elif method == "DELETE":
            self.cluster.clear_loads(now)
        elif method != "GET":
            raise ValueError(f"no simulator admin endpoint {method} /_sim/load")
        return self.cluster.load_table()

    # ---- in-process helpers ---------------------------------------------------------------------
    def set_load(self, vmid: int, profile: str | None) -> None:
        """Give guest ``vmid`` a load profile now, as ``PUT /_sim/load`` does (None: its tag or ``auto``)."""
        with self.state.locked() if self.state else nullcontext():
            self._reload_if_changed()
            now = self.clock.now()
            self.cluster.advance(now)
            self.cluster.set_load(vmid, profile, now)
            self.save()


_LOAD_USAGE = 'PUT /_sim/load takes {"vmid": N, "profile": P} or {"profiles": {"N": P, ...}}'


def _load_assignments(payload: Any) -> dict[int, str | None]:
    """The body of ``PUT /_sim/load`` as vmid -> profile (None drops an assignment)."""
    if not isinstance(payload, dict):
        raise ValueError(_LOAD_USAGE)
    single, many = "vmid" in payload or "profile" in payload, "profiles" in payload
    unknown = set(payload) - {"vmid", "profile", "profiles", "effective", "available"}
    if single == many or unknown:
        raise ValueError(_LOAD_USAGE)
    if single:
        if "vmid" not in payload or "profile" not in payload:
            raise ValueError(_LOAD_USAGE)
        pairs = [(payload["vmid"], payload["profile"])]
    else:
        if not isinstance(payload["profiles"], dict):
            raise ValueError(_LOAD_USAGE)
        pairs = list(payload["profiles"].items())
    out: dict[int, str | None] = {}
    for vmid, profile in pairs:
        if isinstance(vmid, bool) or not str(vmid).strip().isdigit():
            raise ValueError(f"vmid must be an integer, not {vmid!r}")
        if profile is not None and not isinstance(profile, str):
            raise ValueError(f"load profile must be a string or null, not {profile!r}")
        out[int(vmid)] = profile
    return out


def _parse_params(
    method: str, headers: dict[str, str], query: bytes, body: bytes
) -> tuple[dict[str, Any], bool]:
    """Query string plus body, as pveproxy merges them (SEMANTICS §1). Returns (params, body_was_json)."""
    params: dict[str, Any] = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    if not body:
        return params, False
    if method not in ("POST", "PUT"):
        raise SimApiError(501, f"Unexpected content for method '{method}'")
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise SimApiError(400, f"malformed JSON body: {exc}") from exc
        if not isinstance(decoded, dict):
            raise SimApiError(400, "JSON body must be an object")
        params.update(decoded)
        return params, True
    params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params, False


async def _apply_fault(kind: str, latency_s: float, message: str | None) -> None:
    if kind == "latency":
        await asyncio.sleep(latency_s)
    elif kind == "drop":
        raise DropConnection
    elif kind == "http_503":
        raise SimApiError(503, message or "Service Unavailable (simulated fault)")
    elif kind == "http_500":
        raise SimApiError(500, message or "simulated internal error")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, payload: dict[str, Any] | None, reason: str | None) -> None:
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    if payload is not None:
        headers.append((b"content-type", b"application/json;charset=UTF-8"))
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    if reason:
        start["reason"] = reason
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
