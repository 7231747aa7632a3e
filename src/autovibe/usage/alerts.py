"""Alerts about quotas and limits, and the notifiers that deliver them.

An :class:`Alert` is one event worth telling people about (a project passed its warning threshold, was
throttled or emergency-stopped, a machine was stopped for idling...). A :class:`Dispatcher` hands it to
every configured :class:`Notifier` at once: the log always (:class:`LogNotifier`), and an HTTP webhook
when one is configured (:class:`WebhookNotifier`). Delivery is at least once: a retried webhook may
arrive twice, so receivers de-duplicate on the alert ``id`` (also sent as ``X-Autovibe-Delivery``).

Webhook requests
----------------
``POST <url>`` with the alert as compact JSON (``alert.model_dump(mode="json")``, sorted keys, UTF-8)
and these headers:

- ``X-Autovibe-Event``: the alert kind, e.g. ``quota.throttle``
- ``X-Autovibe-Delivery``: the alert id (the same on every retry of one alert)
- ``X-Autovibe-Timestamp``: Unix seconds when this attempt was signed
- ``X-Autovibe-Signature``: ``sha256=`` + hex HMAC-SHA256 with the shared secret over
  ``f"{timestamp}.".encode() + body`` (the raw request body bytes, exactly as received)

Signing the timestamp with the body lets a receiver refuse replays: check the signature, then refuse
timestamps outside a few minutes of its own clock, then de-duplicate on the delivery id::

    import hashlib, hmac, time

    def verify(secret: bytes, headers, body: bytes, tolerance_s: int = 300) -> bool:
        timestamp = headers["X-Autovibe-Timestamp"]
        expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest("sha256=" + expected, headers["X-Autovibe-Signature"]):
            return False
        return abs(time.time() - int(timestamp)) <= tolerance_s

A 2xx answer means delivered. Connection failures, timeouts, 5xx and 429 are retried with exponential
backoff and jitter (a ``Retry-After`` header is honoured, capped); any other answer (4xx, 3xx: redirects
are not followed) fails at once. The secret never appears in logs, reprs or error messages, and only the
webhook's origin (scheme, host, port) is logged, since webhook paths often carry tokens too.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import pydantic_core
import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator

from autovibe import __version__
from autovibe.errors import AutovibeUnavailable

__all__ = [
    "Alert",
    "AlertDeliveryFailed",
    "DeliveryFailure",
    "Dispatcher",
    "LogNotifier",
    "Notifier",
    "Severity",
    "WebhookNotifier",
    "build_notifiers",
    "sign",
]

Severity = Literal["info", "warning", "critical"]

_log = structlog.get_logger("autovibe.alerts")
_USER_AGENT = f"autovibe/{__version__} (alerts)"


class Alert(BaseModel):
    """One event to tell people about.

    ``kind`` is a dotted lower-case name: ``quota.warn``, ``quota.throttle``, ``quota.emergency_stop``,
    ``quota.cleared``, ``limit.violation``, ``machine.idle_stop``... ``message`` is one human sentence;
    ``details`` holds the figures behind it (usage, quota, percent over, stopped machines) and must be
    JSON-serialisable. ``id`` identifies the alert across delivery retries.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length=100)
    severity: Severity
    project: str | None = None
    machine: str | None = None
    message: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=200)

    @field_validator("details")
    @classmethod
    def _json_serialisable(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Fail when the alert is made, not later inside a notifier.
        try:
            pydantic_core.to_json(value)
        except pydantic_core.PydanticSerializationError as exc:
            raise ValueError(f"details must be JSON-serialisable: {exc}") from exc
        return value

    def body(self) -> bytes:
        """The canonical JSON bytes a webhook sends (and signs): compact, sorted keys, UTF-8."""
        data = self.model_dump(mode="json")
        return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


class AlertDeliveryFailed(AutovibeUnavailable):
    """A notifier could not deliver an alert. ``status`` is the last HTTP status, if any answer came."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        attempts: int = 1,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.error = error
        self.attempts = attempts


@runtime_checkable
class Notifier(Protocol):
    """Delivers alerts somewhere. ``send`` raises when it could not deliver."""

    async def send(self, alert: Alert) -> None: ...


def _fields(alert: Alert) -> dict[str, Any]:
    fields = alert.model_dump(mode="json")
    fields["alert_id"] = fields.pop("id")
    return fields


class LogNotifier:
    """Writes each alert to the ``autovibe.alerts`` structlog logger: warning level for warning and
    critical alerts, info otherwise, with the alert's fields as key-values."""

    name = "log"

    async def send(self, alert: Alert) -> None:
        level = "info" if alert.severity == "info" else "warning"
        getattr(_log, level)("alert", **_fields(alert))

    def __repr__(self) -> str:
        return "LogNotifier()"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Autovibe-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds, as text)."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookNotifier:
    """POSTs each alert as signed JSON to ``url``, retrying transient failures (see the module docstring).

    ``client`` is used as given (its owner closes it); without one each delivery opens and closes its
    own. ``attempts`` counts the first try. The delay before retry ``n`` (1-based) is
    ``base_delay_s * 2**(n-1)`` plus up to ``base_delay_s`` of jitter, or the server's ``Retry-After``,
    either capped at ``max_delay_s``. ``timeout_s`` bounds each attempt's connect, write and read.
    """

    def __init__(
        self,
        url: str,
        secret: str | SecretStr,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout_s: float = 10.0,
    ) -> None:
        self._url = _check_url(url)
        self._origin = _origin(self._url)
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        if not self._secret.get_secret_value():
            raise ValueError("the webhook secret must not be empty")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if base_delay_s < 0 or max_delay_s < 0 or timeout_s <= 0:
            raise ValueError("delays must not be negative and the timeout must be positive")
        self._client = client
        self._attempts = attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep
        self._timeout_s = timeout_s

    @property
    def name(self) -> str:
        return f"webhook {self._origin}"

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._origin!r})"

    async def send(self, alert: Alert) -> None:
        if self._client is not None:
            await self._deliver(self._client, alert)
            return
        async with httpx.AsyncClient() as client:
            await self._deliver(client, alert)

    def _headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))  # signed per attempt: receivers judge freshness on arrival
        return {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "X-Autovibe-Event": alert.kind,
            "X-Autovibe-Delivery": alert.id,
            "X-Autovibe-Timestamp": timestamp,
            "X-Autovibe-Signature": sign(self._secret.get_secret_value().encode("utf-8"), timestamp, body),
        }

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        body = alert.body()
        status: int | None = None
        error = ""
        for attempt in range(1, self._attempts + 1):
            retry_after: float | None = None
            try:
                response = await client.post(
                    self._url, content=body, headers=self._headers(alert, body), timeout=self._timeout_s
                )
            except httpx.TimeoutException as exc:
                status, error = None, f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                status, error = None, f"connection failed ({type(exc).__name__}: {exc})"
                if _tls_failure(exc):  # asking again will not make the certificate trusted
                    raise self._failed(alert, error, status, attempt) from exc
            else:
                status = response.status_code
                if response.is_success:
                    _log.debug("alert.delivered", notifier=self.name, alert_id=alert.id, attempt=attempt)
                    return
                error = f"HTTP {status}"
                if status != 429 and not 500 <= status <= 599:
                    raise self._failed(alert, error, status, attempt)
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
            if attempt == self._attempts:
                break
            delay = self._delay(attempt, retry_after)
            _log.warning(
                "alert.retry",
                notifier=self.name,
                alert_id=alert.id,
                kind=alert.kind,
                attempt=attempt,
                delay=round(delay, 3),
                error=error,
            )
            await self._sleep(delay)
        raise self._failed(alert, error, status, self._attempts)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_delay_s)
        base = self._base_delay_s * 2.0 ** (attempt - 1)
        return min(base + random.uniform(0, self._base_delay_s), self._max_delay_s)

    def _failed(self, alert: Alert, error: str, status: int | None, attempts: int) -> AlertDeliveryFailed:
        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        return AlertDeliveryFailed(
            f"alert {alert.kind} ({alert.id}) not delivered to {self.name} after {tries}: {error}",
            status=status,
            error=error,
            attempts=attempts,
            hint="check that the webhook receiver is up, reachable and accepts the signature",
        )


def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid webhook URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the webhook URL must be an absolute http:// or https:// URL")
    return url


def _origin(url: str) -> str:
    """``scheme://host[:port]``: what may be logged of a URL (no credentials, path or query)."""
    parsed = httpx.URL(url)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}"


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class DeliveryFailure:
    """One notifier that failed to deliver one alert: its name and the exception it raised."""

    notifier: str
    error: Exception

    def __str__(self) -> str:
        return f"{self.notifier}: {self.error}"


def _name(notifier: Notifier) -> str:
    name = getattr(notifier, "name", None)
    return name if isinstance(name, str) else type(notifier).__name__


class Dispatcher:
    """Sends each alert to all its notifiers concurrently; one failing notifier never stops the others.

    A webhook that keeps failing retries for a while (minutes with the defaults), so callers on a hot
    path should run ``send`` in a background task.
    """

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers: tuple[Notifier, ...] = tuple(notifiers)

    def __repr__(self) -> str:
        return f"Dispatcher({list(self.notifiers)!r})"

    async def send(self, alert: Alert) -> list[DeliveryFailure]:
        """Deliver ``alert`` everywhere; returns the notifiers that failed (empty when all delivered)."""
        results = await asyncio.gather(*(self._send_one(notifier, alert) for notifier in self.notifiers))
        return [failure for failure in results if failure is not None]

    async def _send_one(self, notifier: Notifier, alert: Alert) -> DeliveryFailure | None:
        name = _name(notifier)
        try:
            await notifier.send(alert)
        except Exception as exc:
            # No exc_info: rich tracebacks may render local variables, and a notifier's locals hold secrets.
            _log.error(
                "alert.notifier_failed",
                notifier=name,
                alert_id=alert.id,
                kind=alert.kind,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            return DeliveryFailure(notifier=name, error=exc)
        return None


def build_notifiers(webhook_url: str | None, webhook_secret: str | SecretStr | None) -> Dispatcher:
    """The configured notifiers: the log always, a webhook when ``webhook_url`` is set (with a secret).

    Empty strings count as unset. A secret without a URL is refused too: it means a half-done setup.
    """
    secret = webhook_secret.get_secret_value() if isinstance(webhook_secret, SecretStr) else webhook_secret
    notifiers: list[Notifier] = [LogNotifier()]
    if webhook_url:
        if not secret:
            raise ValueError("a webhook URL needs a webhook secret to sign its requests")
        notifiers.append(WebhookNotifier(webhook_url, SecretStr(secret)))
    elif secret:
        raise ValueError("a webhook secret is set but no webhook URL")
    return Dispatcher(notifiers)
