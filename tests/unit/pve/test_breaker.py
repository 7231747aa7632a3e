"""The circuit breaker in front of PVE: opens after failures in a row, fails fast, lets one trial
through after the reset time, and closes when that trial gets an answer."""

from __future__ import annotations

import pytest

from autovibe.pve.breaker import BreakerState, CircuitBreaker, PveCircuitOpen
from autovibe.pve.errors import PveApiError, PveConnectError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused() -> PveConnectError:
    return PveConnectError("cannot connect: refused", method="GET", path="/version")


def test_opens_after_failures_in_a_row_fails_fast_then_recovers_through_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_after_s=10, clock=clock)
    for _ in range(2):
        breaker.before("GET", "/version")
        breaker.record(refused())
    assert breaker.state is BreakerState.CLOSED
    breaker.before("GET", "/version")
    breaker.record(refused())
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(PveCircuitOpen) as fast:
        breaker.before("GET", "/nodes")
    assert "not trying again for 10 s" in str(fast.value)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before("GET", "/version")  # the trial goes through ...
    with pytest.raises(PveCircuitOpen):
        breaker.before("GET", "/nodes")  # ... and only the trial
    breaker.record(None)
    assert breaker.state is BreakerState.CLOSED
    breaker.before("GET", "/nodes")


def test_a_failed_trial_opens_it_again_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_after_s=5, clock=clock)
    breaker.before("GET", "/x")
    breaker.record(refused())
    clock.now += 5
    breaker.before("GET", "/x")
    breaker.record(refused())
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s == 5


def test_an_error_answer_proves_the_endpoint_alive_but_a_gateway_error_does_not() -> None:
    breaker = CircuitBreaker(failures=2, reset_after_s=5, clock=Clock())
    breaker.record(refused())
    breaker.record(PveApiError("VM is locked (backup)", status=500))  # PVE answered: resets the count
    breaker.record(refused())
    assert breaker.state is BreakerState.CLOSED
    breaker.record(PveApiError("proxy error", status=502))
    assert breaker.state is BreakerState.OPEN
