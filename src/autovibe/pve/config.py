"""Value objects that tune the PVE client: timeouts, retry, task polling, TLS trust.

Each is a frozen dataclass with a module-level default beside it, so a caller changes one knob
without repeating the others::

    PveClient(url, auth=auth, retry=Retry(attempts=2), timeouts=PveTimeouts(read=120))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_TLS",
    "PollPolicy",
    "PveTimeouts",
    "Retry",
    "TlsTrust",
    "format_fingerprint",
    "normalize_fingerprint",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PveTimeouts:
    """Seconds allowed per phase of one HTTP exchange (not per retried call).

    ``read`` bounds a single response; long PVE work runs as tasks, so 30 s is plenty for the API
    itself. ``pool`` bounds the wait for a free pooled connection.
    """

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PveTimeouts.{name} must be positive")


DEFAULT_TIMEOUTS = PveTimeouts()


@dataclass(frozen=True, slots=True)
class Retry:
    """How idempotent requests (GET only) are retried on transport errors and 5xx answers.

    ``attempts`` counts the first try. The n-th wait is ``backoff * 2**(n-1)`` plus a random jitter
    of up to ``backoff`` seconds, capped at ``max_backoff``. ``Retry(attempts=1)`` disables retries.
    POST, PUT and DELETE are never retried: PVE may have acted on them already.
    """

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError("Retry needs 0 <= backoff <= max_backoff")


DEFAULT_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Delays between task status polls: ``initial`` seconds, multiplied by ``factor`` up to ``maximum``."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("PollPolicy needs 0 < initial <= maximum and factor >= 1")

    def delays(self) -> _DelayIterator:
        """An endless iterator of successive poll delays."""
        return _DelayIterator(self)


class _DelayIterator:
    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._next = policy.initial

    def __iter__(self) -> _DelayIterator:
        return self

    def __next__(self) -> float:
        delay = self._next
        self._next = min(delay * self._policy.factor, self._policy.maximum)
        return delay


DEFAULT_POLL = PollPolicy()


def normalize_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as 64 lower-case hex digits.

    Accepts what ``pvenode cert info`` prints (``AA:BB:...``), lower case, and the form without
    colons. Raises ``ValueError`` for anything that is not exactly 32 bytes of hex.
    """
    digits = value.strip().replace(":", "").lower()
    if not _HEX64.fullmatch(digits):
        raise ValueError("a SHA-256 fingerprint is 32 hex bytes, like 'AB:CD:...' (64 hex digits)")
    return digits


def format_fingerprint(digits: str) -> str:
    """Show normalised hex digits the way PVE does: upper case, colon-separated pairs."""
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2)).upper()


@dataclass(frozen=True, slots=True)
class TlsTrust:
    """How the client decides to trust the PVE host's certificate.

    - default: verify against the public CA store, hostname included;
    - ``ca_bundle``: verify against this PEM file instead (a private CA such as PVE's own);
    - ``fingerprint``: trust exactly the certificate whose SHA-256 matches, as PVE's
      self-signed certificates need. Verification stays on: the client learns that certificate
      once, then every handshake must present it;
    - ``verify=False``: no verification at all. Only when explicitly asked; it cannot be combined
      with the other two.
    """

    verify: bool = True
    ca_bundle: Path | None = None
    fingerprint: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))
        if self.fingerprint is not None and self.ca_bundle is not None:
            raise ValueError("TlsTrust takes a fingerprint or a ca_bundle, not both")
        if not self.verify and (self.fingerprint is not None or self.ca_bundle is not None):
            raise ValueError("verify=False cannot be combined with a fingerprint or ca_bundle")


DEFAULT_TLS = TlsTrust()
