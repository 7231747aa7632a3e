"""When and how the client retries: only GETs, only on failures that asking again can fix."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from autovibe.pve.config import Retry
from autovibe.pve.errors import PveApiError, PveConnectError, PveLocked, PveNotFound, PveTimeout

__all__ = ["RETRY_STATUSES", "is_retryable", "retrying"]

RETRY_STATUSES = frozenset({500, 502, 503, 504, 595, 596})
"""5xx answers worth retrying a GET on; 595/596 are pveproxy's "cannot reach the other node"."""

_log = structlog.get_logger("autovibe.pve")


def is_retryable(exc: BaseException) -> bool:
    """True for timeouts, dropped connections and transient 5xx answers.

    TLS failures, bad envelopes and 4xx answers are not retried, and neither are the 500s PVE
    uses for a missing guest or a lock: asking again will not change those answers.
    """
    if isinstance(exc, PveTimeout | PveConnectError):
        return True
    if isinstance(exc, PveNotFound | PveLocked):
        return False
    return isinstance(exc, PveApiError) and exc.status in RETRY_STATUSES


def retrying(
    policy: Retry, sleep: Callable[[float], Awaitable[None]], method: str, path: str
) -> AsyncRetrying:
    """A tenacity controller for one call: exponential backoff with jitter, ``sleep`` injected."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_backoff(policy),
        retry=retry_if_exception(is_retryable),
        sleep=sleep,
        before_sleep=_log_retry(method, path),
        reraise=True,
    )


def _backoff(policy: Retry) -> Callable[[RetryCallState], float]:
    # Written out rather than tenacity's wait_exponential_jitter, whose arguments changed in 9.x.
    def wait(state: RetryCallState) -> float:
        base: float = policy.backoff * 2.0 ** (state.attempt_number - 1)
        return min(base + random.uniform(0, policy.backoff), policy.max_backoff)

    return wait


def _log_retry(method: str, path: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else None
        _log.warning(
            "pve.retry", method=method, path=path, attempt=state.attempt_number, delay=delay, error=str(error)
        )

    return log
