"""Errors a simulator handler raises; the app turns them into PVE-shaped HTTP answers.

PVE has three shapes (shared/pve-api/SEMANTICS.md §1):
- 400 parameter verification: JSON body with ``errors`` {param: message}, message "Parameter verification
  failed."
- 401 authentication: empty body, the text only in the reason phrase.
- 403/500/501: JSON body ``{"data": null, "message": "...\\n"}``; reason phrase = first line of message.
"""

from __future__ import annotations


class SimApiError(Exception):
    """An HTTP error answer. ``message`` is PVE's text; a trailing newline is added on the wire."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message.rstrip("\n")
        self.errors = errors


class SimAuthError(SimApiError):
    """401 before any handler runs: empty body, text in the reason phrase only."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


class DropConnection(Exception):
    """Raised by fault injection: the HTTP server closes the socket without answering."""


def param_error(errors: dict[str, str]) -> SimApiError:
    """400 "Parameter verification failed." with per-parameter messages."""
    return SimApiError(400, "Parameter verification failed.", errors)


def runtime_error(message: str) -> SimApiError:
    """500 with PVE's die text, e.g. ``VM 100 is running - destroy failed``."""
    return SimApiError(500, message)


def permission_error(path: str, privs: str) -> SimApiError:
    """403 ``Permission check failed (/vms/100, VM.Allocate)``."""
    return SimApiError(403, f"Permission check failed ({path}, {privs})")


class TaskError(Exception):
    """Raised inside a task's worker: the task ends with ``TASK ERROR: <message>``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message.rstrip("\n").replace("\n", " ")
