"""Every error the PVE client raises, and the one function that reads PVE's error answers.

::

    PveError                                  (AutovibeError)
    ├── PveTransportError                     (AutovibeUnavailable) no usable answer from PVE
    │   ├── PveTimeout                        connect/read/write/pool timeout
    │   ├── PveConnectError                   refused, reset, dropped keep-alive connection
    │   ├── PveTlsError                       handshake failed or pinned fingerprint differs
    │   └── PveProtocolError                  an answer that is not PVE's JSON envelope
    ├── PveApiError(status, message, errors)  PVE answered with an HTTP error
    │   ├── PveNotFound                       (AutovibeNotFound) 404
    │   │   └── PveConfigMissing              500 "Configuration file '...' does not exist"
    │   ├── PveAuthError                      (AutovibeDenied) 401
    │   ├── PvePermissionDenied               (AutovibeDenied) 403
    │   ├── PveLocked                         (AutovibeConflict) "VM is locked (x)", "can't lock file"
    │   └── PveInvalidParams                  (AutovibeInvalid) 400, ``errors`` per parameter
    ├── PveTaskFailed(upid, exitstatus, log_tail)
    ├── PveTaskTimeout(upid, waited)          the task still runs on PVE
    └── PveInvalidUpid                        (AutovibeInvalid, ValueError)

Each error carries the request's ``method`` and ``path`` (never headers, parameters or secrets);
``str(error)`` is PVE's message followed by them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from autovibe.errors import (
    AutovibeConflict,
    AutovibeDenied,
    AutovibeError,
    AutovibeInvalid,
    AutovibeNotFound,
    AutovibeUnavailable,
)

__all__ = [
    "PveApiError",
    "PveAuthError",
    "PveConfigMissing",
    "PveConnectError",
    "PveError",
    "PveInvalidParams",
    "PveInvalidUpid",
    "PveLocked",
    "PveNotFound",
    "PvePermissionDenied",
    "PveProtocolError",
    "PveTaskFailed",
    "PveTaskTimeout",
    "PveTimeout",
    "PveTlsError",
    "PveTransportError",
    "error_from_response",
    "parse_lock",
]

# SEMANTICS §4: the text names the guest type and the lock value, never the VMID.
_CONFIG_LOCK = re.compile(r"\b(?:VM|CT) is locked \(([^)]*)\)")
# SEMANTICS §4: the short file lock taken around every config change.
_FILE_LOCK = re.compile(r"can't lock file '[^']*'")
# SEMANTICS §1: a missing guest is a 500, not a 404.
_CONFIG_MISSING = re.compile(r"^Configuration file '[^']*' does not exist")


class PveError(AutovibeError):
    """Base of all PVE client errors. ``method``/``path`` name the API call when there was one."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.method = method
        self.path = path

    def __str__(self) -> str:
        if self.method is None:
            return self.message
        return f"{self.message} ({self.method} {self.path})"


class PveTransportError(PveError, AutovibeUnavailable):
    """No usable answer came back; for a GET the client already retried."""


class PveTimeout(PveTransportError):
    """A connect, read, write or pool timeout elapsed."""


class PveConnectError(PveTransportError):
    """The connection was refused, reset, or closed under the request."""


class PveTlsError(PveTransportError):
    """The TLS handshake failed, or the certificate does not match the pinned fingerprint."""


class PveProtocolError(PveTransportError):
    """The answer was not PVE's ``{"data": ...}`` JSON envelope (a proxy page, a truncated body)."""


class PveApiError(PveError):
    """PVE answered with an HTTP error. ``errors`` maps parameter names to PVE's complaint."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        errors: Mapping[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, hint=hint)
        self.status = status
        self.errors: dict[str, str] = dict(errors or {})

    def __str__(self) -> str:
        text = super().__str__()
        if self.errors:
            details = "; ".join(f"{key}: {value}" for key, value in sorted(self.errors.items()))
            text = f"{text} [{details}]"
        return text


class PveNotFound(PveApiError, AutovibeNotFound):
    """The addressed object does not exist."""


class PveConfigMissing(PveNotFound):
    """The guest's config file does not exist: PVE's way of saying "no such VM/CT" (HTTP 500)."""


class PveAuthError(PveApiError, AutovibeDenied):
    """PVE refused the credentials (bad token, expired ticket, wrong password, bad CSRF token)."""


class PvePermissionDenied(PveApiError, AutovibeDenied):
    """Authenticated, but missing a privilege, e.g. "Permission check failed (/vms/100, VM.Allocate)"."""


class PveLocked(PveApiError, AutovibeConflict):
    """The guest config is locked. ``lock`` is the lock value (``snapshot``, ``clone``...), or None
    when only the short-lived config file lock timed out."""

    @property
    def lock(self) -> str | None:
        return parse_lock(self.message)


class PveInvalidParams(PveApiError, AutovibeInvalid):
    """PVE rejected the parameters; ``errors`` says which and why."""


class PveTaskFailed(PveError):
    """A task ended with an exit status other than ``OK`` or ``WARNINGS: N``.

    ``exitstatus`` is PVE's text (``VM 100 already running``); ``log_tail`` holds the last log lines.
    """

    def __init__(
        self,
        upid: str,
        exitstatus: str,
        log_tail: tuple[str, ...],
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(f"task {upid} failed: {exitstatus}", method=method, path=path)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail

    @property
    def lock(self) -> str | None:
        """The lock value when the task failed because the guest was locked (SEMANTICS §4)."""
        return parse_lock(self.exitstatus)


class PveTaskTimeout(PveError):
    """Waiting for a task took longer than allowed. The task itself keeps running on PVE."""

    def __init__(self, upid: str, waited: float) -> None:
        super().__init__(
            f"task {upid} still running after {waited:.0f} s",
            hint="the task may still finish; check it with the task status or log",
        )
        self.upid = upid
        self.waited = waited


class PveInvalidUpid(PveError, AutovibeInvalid, ValueError):
    """A string is not a UPID of the form ``UPID:node:pid:pstart:starttime:type:id:user:``."""


def parse_lock(message: str) -> str | None:
    """The lock value named in a PVE lock error ("VM is locked (snapshot)" gives ``snapshot``)."""
    found = _CONFIG_LOCK.search(message)
    return found.group(1) if found else None


def error_from_response(method: str, path: str, status: int, reason: str, body: bytes) -> PveApiError:
    """Turn a non-2xx PVE answer into the matching ``PveApiError`` subclass.

    PVE 8.4 puts the message in the JSON body's ``message``; older hosts and every 401 raised
    before a handler runs send it only as the HTTP reason phrase (SEMANTICS §1).
    """
    message, errors = _read_error_body(body)
    message = (message or reason or f"HTTP {status}").strip()
    kind, hint = _classify(status, message)
    return kind(message, status=status, errors=errors, method=method, path=path, hint=hint)


def _classify(status: int, message: str) -> tuple[type[PveApiError], str | None]:
    if status == 400:
        return PveInvalidParams, None
    if status == 401:
        return PveAuthError, "check the API token, or the user name and password"
    if status == 403:
        return PvePermissionDenied, None
    if status == 404:
        return PveNotFound, None
    if _CONFIG_LOCK.search(message) or _FILE_LOCK.search(message):
        return PveLocked, "another operation holds the guest; retry when it has finished"
    if _CONFIG_MISSING.search(message):
        return PveConfigMissing, None
    return PveApiError, None


def _read_error_body(body: bytes) -> tuple[str | None, dict[str, str]]:
    """PVE's ``message`` and ``errors`` from an error body; neither is guaranteed to be there."""
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        return None, {}
    if not isinstance(decoded, dict):
        return None, {}
    message = decoded.get("message")
    raw_errors = decoded.get("errors")
    errors: dict[str, str] = {}
    if isinstance(raw_errors, dict):
        errors = {str(key): str(value).strip() for key, value in raw_errors.items()}
    return (message if isinstance(message, str) and message.strip() else None), errors
