"""A circuit breaker for the PVE endpoint: after repeated failures, fail fast instead of waiting.

Closed: calls go through; ``failures`` transport failures *in a row* open it. Open: every call fails
at once with :class:`PveCircuitOpen` (HTTP 503 at the hub) for ``reset_after_s``. Half-open: one trial
call goes through; its success closes the breaker, its failure opens it again. Only a missing answer
counts as a failure (connection refused, timeout, a gateway's 502/503/504, pveproxy's 595/596 for an
unreachable node): a PVE error answer such as "VM is locked" proves the endpoint is alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from autovibe.pve.errors import PveApiError, PveError, PveTransportError

GATEWAY_STATUSES = frozenset({502, 503, 504, 595, 596})


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class PveCircuitOpen(PveTransportError):
    """PVE failed repeatedly; calls fail fast until the breaker's trial call succeeds."""


def is_endpoint_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the PVE endpoint did not answer (as opposed to answering with an error)."""
    if isinstance(exc, PveCircuitOpen):
        return False
    if isinstance(exc, PveTransportError):
        return True
    return isinstance(exc, PveApiError) and exc.status in GATEWAY_STATUSES


class CircuitBreaker:
    """Not thread-safe by design: one event loop owns a ``PveClient`` and therefore its breaker."""

    def __init__(
        self, *, failures: int = 5, reset_after_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or reset_after_s <= 0:
            raise ValueError("failures must be >= 1 and reset_after_s > 0")
        self.failures = failures
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.reset_after_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def before(self, method: str, path: str) -> None:
        """Let the call through, or raise :class:`PveCircuitOpen` without touching the network."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True  # this call is the trial; the others keep failing fast
            return
        assert self._opened_at is not None
        wait = max(0.0, self.reset_after_s - (self._clock() - self._opened_at))
        raise PveCircuitOpen(
            f"PVE is not answering ({self._in_a_row} failures in a row); not trying again for {wait:.0f} s",
            method=method,
            path=path,
            hint="check that the PVE host is up and reachable; calls resume by themselves once it answers",
        )

    def record(self, exc: BaseException | None) -> None:
        """The outcome of a call that :meth:`before` let through (``None``: it got an answer)."""
        self._trial_running = False
        if exc is not None and is_endpoint_failure(exc):
            self._in_a_row += 1
            if self._opened_at is not None or self._in_a_row >= self.failures:
                self._opened_at = self._clock()  # open, or open again after a failed trial
            return
        if exc is None or isinstance(exc, PveError):
            self._in_a_row = 0
            self._opened_at = None

    @property
    def retry_after_s(self) -> float:
        """Seconds until the next trial call may go through (0 when closed or half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_after_s - (self._clock() - self._opened_at))
