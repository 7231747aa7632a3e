"""Alert notifiers against a real local HTTP receiver: signing, retries, backoff, isolation, secrets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pydantic
import pytest
import structlog

from autovibe.errors import AutovibeUnavailable
from autovibe.usage.alerts import (
    Alert,
    AlertDeliveryFailed,
    Dispatcher,
    LogNotifier,
    WebhookNotifier,
    build_notifiers,
)

SECRET = "whsec-7f3a9c-do-not-leak"
PATH_TOKEN = "tok-81b2e5-path-secret"


# -- the receiver --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script, then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: list[tuple[int, dict[str, str], float]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, stall_s = receiver._record(
                    Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                time.sleep(stall_s)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    def answer_next(self, count: int, status: int, headers: dict[str, str] | None = None, stall_s: float = 0):
        """Answer the next ``count`` requests with ``status`` (after ``stall_s``), then go on as before."""
        with self._lock:
            self._script.extend([(status, headers or {}, stall_s)] * count)

    def _record(self, request: Received) -> tuple[int, dict[str, str], float]:
        with self._lock:
            self.requests.append(request)
            return self._script.pop(0) if self._script else (200, {}, 0.0)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class FakeSleep:
    """Records the backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "quota.throttle",
        "severity": "warning",
        "project": "alpha",
        "machine": None,
        "message": "Project alpha is 12% over its CPU quota and has been throttled.",
        "details": {"usage": 112.0, "quota": 100, "percent_over": 12.0, "stopped": ["vm-101", "vm-102"]},
        "at": datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    }
    return Alert(**(fields | overrides))


def signature_ok(request: Received, secret: str = SECRET) -> bool:
    timestamp = request.headers["x-autovibe-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["x-autovibe-signature"], f"sha256={expected}")


def webhook(receiver_url: str, sleep: FakeSleep, **options: Any) -> WebhookNotifier:
    return WebhookNotifier(f"{receiver_url}/hooks/{PATH_TOKEN}", SECRET, sleep=sleep, **options)


# -- delivery ------------------------------------------------------------------------------------


async def test_posts_signed_canonical_json(receiver: Receiver):
    sleep = FakeSleep()
    alert = make_alert()

    before = int(time.time())
    await webhook(receiver.url, sleep).send(alert)
    after = int(time.time())

    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == f"/hooks/{PATH_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-autovibe-event"] == "quota.throttle"
    assert request.headers["x-autovibe-delivery"] == alert.id
    assert before <= int(request.headers["x-autovibe-timestamp"]) <= after
    assert signature_ok(request)
    assert not signature_ok(request, secret="another-secret")
    payload = json.loads(request.body)
    assert payload == alert.model_dump(mode="json")
    assert request.body == json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    assert Alert.model_validate_json(request.body) == alert
    assert sleep.delays == []


async def test_a_tampered_body_or_timestamp_fails_verification(receiver: Receiver):
    await webhook(receiver.url, FakeSleep()).send(make_alert())
    [request] = receiver.requests

    tampered_body = Received(
        request.method, request.path, request.headers, request.body.replace(b"12", b"13")
    )
    replayed = Received(
        request.method,
        request.path,
        request.headers | {"x-autovibe-timestamp": str(int(request.headers["x-autovibe-timestamp"]) + 3600)},
        request.body,
    )
    assert signature_ok(request)
    assert not signature_ok(tampered_body)
    assert not signature_ok(replayed)


async def test_retries_5xx_with_growing_backoff_then_succeeds(receiver: Receiver):
    receiver.answer_next(3, 503)
    sleep = FakeSleep()
    alert = make_alert()

    await webhook(receiver.url, sleep, attempts=5, base_delay_s=0.5, max_delay_s=30).send(alert)

    assert len(receiver.requests) == 4
    assert {r.headers["x-autovibe-delivery"] for r in receiver.requests} == {alert.id}
    assert all(signature_ok(r) for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1
    assert len(sleep.delays) == 3
    for retry, delay in enumerate(sleep.delays):
        assert 0.5 * 2**retry <= delay <= 0.5 * 2**retry + 0.5  # exponential plus up to one base of jitter
    assert sleep.delays == sorted(sleep.delays)


async def test_backoff_is_capped(receiver: Receiver):
    receiver.answer_next(4, 500)
    sleep = FakeSleep()

    await webhook(receiver.url, sleep, attempts=5, base_delay_s=1.0, max_delay_s=3.0).send(make_alert())

    assert len(sleep.delays) == 4
    assert sleep.delays[2:] == [3.0, 3.0]


async def test_retry_after_is_honoured_and_capped(receiver: Receiver):
    receiver.answer_next(2, 429, {"Retry-After": "7"})
    receiver.answer_next(1, 503, {"Retry-After": "120"})
    sleep = FakeSleep()

    await webhook(receiver.url, sleep, attempts=4, max_delay_s=30).send(make_alert())

    assert len(receiver.requests) == 4
    assert sleep.delays == [7.0, 7.0, 30.0]


async def test_an_unusable_retry_after_falls_back_to_backoff(receiver: Receiver):
    receiver.answer_next(1, 429, {"Retry-After": "soon"})
    sleep = FakeSleep()

    await webhook(receiver.url, sleep, base_delay_s=0.5).send(make_alert())

    assert len(sleep.delays) == 1
    assert 0.5 <= sleep.delays[0] <= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 302])
async def test_other_client_errors_are_not_retried(receiver: Receiver, status: int):
    receiver.answer_next(1, status, {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {})
    sleep = FakeSleep()

    with pytest.raises(AlertDeliveryFailed) as caught:
        await webhook(receiver.url, sleep).send(make_alert())

    assert caught.value.status == status
    assert caught.value.attempts == 1
    assert f"HTTP {status}" in str(caught.value)
    assert len(receiver.requests) == 1
    assert sleep.delays == []


async def test_gives_up_after_the_last_attempt(receiver: Receiver):
    receiver.answer_next(10, 503)
    sleep = FakeSleep()

    with pytest.raises(AlertDeliveryFailed) as caught:
        await webhook(receiver.url, sleep, attempts=3).send(make_alert())

    assert isinstance(caught.value, AutovibeUnavailable)
    assert caught.value.status == 503
    assert caught.value.attempts == 3
    assert "after 3 attempts: HTTP 503" in str(caught.value)
    assert len(receiver.requests) == 3
    assert len(sleep.delays) == 2


async def test_connection_refused_is_retried_then_fails(closed_port: int):
    sleep = FakeSleep()
    notifier = WebhookNotifier(f"http://127.0.0.1:{closed_port}/hook", SECRET, sleep=sleep, attempts=3)

    with pytest.raises(AlertDeliveryFailed) as caught:
        await notifier.send(make_alert())

    assert caught.value.status is None
    assert caught.value.attempts == 3
    assert "connection failed (ConnectError" in str(caught.value)
    assert len(sleep.delays) == 2


async def test_a_timeout_is_retried(receiver: Receiver):
    receiver.answer_next(1, 200, stall_s=0.5)
    sleep = FakeSleep()

    await webhook(receiver.url, sleep, timeout_s=0.2).send(make_alert())

    assert len(receiver.requests) == 2
    assert len(sleep.delays) == 1


async def test_an_injected_client_is_used_and_left_open(receiver: Receiver):
    import httpx

    async with httpx.AsyncClient() as client:
        notifier = webhook(receiver.url, FakeSleep(), client=client)
        await notifier.send(make_alert())
        await notifier.send(make_alert(kind="quota.cleared", severity="info"))
        assert not client.is_closed

    assert [r.headers["x-autovibe-event"] for r in receiver.requests] == ["quota.throttle", "quota.cleared"]


# -- the log notifier and the dispatcher ---------------------------------------------------------


async def test_log_notifier_levels_and_fields():
    with structlog.testing.capture_logs() as logs:
        await LogNotifier().send(make_alert(severity="critical", kind="quota.emergency_stop"))
        await LogNotifier().send(make_alert(severity="warning"))
        await LogNotifier().send(make_alert(severity="info", kind="quota.cleared"))

    assert [entry["log_level"] for entry in logs] == ["warning", "warning", "info"]
    first = logs[0]
    assert first["event"] == "alert"
    assert first["kind"] == "quota.emergency_stop"
    assert first["project"] == "alpha"
    assert first["details"]["percent_over"] == 12.0
    assert first["message"].startswith("Project alpha")
    assert first["alert_id"]


class Exploding:
    name = "exploding"

    async def send(self, alert: Alert) -> None:
        raise RuntimeError("receiver on fire")


class Handshake:
    """Two notifiers that finish only if they run concurrently: the first waits for the second."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    class Waiter:
        def __init__(self, event: asyncio.Event) -> None:
            self.event = event

        async def send(self, alert: Alert) -> None:
            await self.event.wait()

    class Setter:
        def __init__(self, event: asyncio.Event) -> None:
            self.event = event

        async def send(self, alert: Alert) -> None:
            self.event.set()


async def test_dispatcher_isolates_a_failing_notifier(receiver: Receiver):
    sleep = FakeSleep()
    dispatcher = Dispatcher([Exploding(), LogNotifier(), webhook(receiver.url, sleep)])
    alert = make_alert()

    with structlog.testing.capture_logs() as logs:
        failures = await dispatcher.send(alert)

    assert [(f.notifier, str(f.error)) for f in failures] == [("exploding", "receiver on fire")]
    assert isinstance(failures[0].error, RuntimeError)
    assert len(receiver.requests) == 1
    events = {entry["event"]: entry for entry in logs}
    assert events["alert"]["alert_id"] == alert.id
    assert events["alert.notifier_failed"]["notifier"] == "exploding"
    assert events["alert.notifier_failed"]["error"] == "receiver on fire"


async def test_dispatcher_reports_every_failure_and_runs_notifiers_concurrently(receiver: Receiver):
    receiver.answer_next(1, 400)
    handshake = Handshake()
    dispatcher = Dispatcher(
        [
            Handshake.Waiter(handshake.event),
            webhook(receiver.url, FakeSleep()),
            Exploding(),
            Handshake.Setter(handshake.event),
        ]
    )

    async with asyncio.timeout(5):
        failures = await dispatcher.send(make_alert())

    assert [f.notifier for f in failures] == [f"webhook {receiver.url}", "exploding"]
    assert isinstance(failures[0].error, AlertDeliveryFailed)
    assert await Dispatcher([]).send(make_alert()) == []


async def test_no_secret_reaches_logs_reprs_or_errors(receiver: Receiver, capsys: pytest.CaptureFixture[str]):
    receiver.answer_next(3, 503)
    receiver.answer_next(1, 401)
    notifier = webhook(receiver.url, FakeSleep(), attempts=3)
    dispatcher = Dispatcher([LogNotifier(), notifier])

    with structlog.testing.capture_logs() as logs:
        failures = await dispatcher.send(make_alert())  # 503 x3: retries logged, then gives up
        more = await dispatcher.send(make_alert())  # 401: refused at once

    assert len(failures) == len(more) == 1
    captured = capsys.readouterr()
    text = " ".join(
        [
            repr(logs),
            captured.out,
            captured.err,
            repr(notifier),
            repr(dispatcher),
            *(str(f) for f in [*failures, *more]),
            *(repr(f.error) for f in [*failures, *more]),
        ]
    )
    assert any(entry["event"] == "alert.retry" for entry in logs)
    assert receiver.url in text  # the origin is what identifies the webhook
    assert SECRET not in text
    assert PATH_TOKEN not in text


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "example.com/hook",
        "",
        "http://",
        "javascript:alert(1)",
    ],
)
def test_non_http_urls_are_rejected(url: str):
    with pytest.raises(ValueError):
        WebhookNotifier(url, SECRET)


def test_an_empty_secret_is_rejected():
    with pytest.raises(ValueError):
        WebhookNotifier("https://hooks.example.com/x", "")
    with pytest.raises(ValueError):
        WebhookNotifier("https://hooks.example.com/x", pydantic.SecretStr(""))


def test_build_notifiers():
    assert [type(n) for n in build_notifiers(None, None).notifiers] == [LogNotifier]
    assert [type(n) for n in build_notifiers("", "").notifiers] == [LogNotifier]
    built = build_notifiers("https://hooks.example.com/autovibe", pydantic.SecretStr(SECRET))
    assert [type(n) for n in built.notifiers] == [LogNotifier, WebhookNotifier]
    with pytest.raises(ValueError, match="needs a webhook secret"):
        build_notifiers("https://hooks.example.com/autovibe", None)
    with pytest.raises(ValueError, match="no webhook URL"):
        build_notifiers(None, SECRET)
    with pytest.raises(ValueError):
        build_notifiers("ftp://hooks.example.com/autovibe", SECRET)


def test_alert_model():
    alert = make_alert()
    assert alert.id != make_alert().id  # a fresh uuid4 per alert
    with pytest.raises(pydantic.ValidationError):
        alert.severity = "info"
    with pytest.raises(pydantic.ValidationError):
        make_alert(at=datetime(2025, 1, 1))  # naive
    with pytest.raises(pydantic.ValidationError):
        make_alert(severity="fatal")
    with pytest.raises(pydantic.ValidationError):
        make_alert(kind="Quota Throttle\r\nX-Evil: 1")  # becomes a header: must be a plain dotted name
    with pytest.raises(pydantic.ValidationError):
        make_alert(details={"handle": object()})
    assert (
        Alert(kind="machine.idle_stop", severity="info", message="Stopped idle vm-7.").at.tzinfo is not None
    )
