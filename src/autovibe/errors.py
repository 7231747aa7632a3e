"""The domain error kinds. Faces map kinds, not concrete classes, to exit codes and HTTP statuses.

Concrete errors subclass one kind and, where it fits, a builtin (``ProfileNotFound(AutovibeNotFound,
KeyError)``) so plain Python callers can catch them too. Imports nothing from autovibe.
"""

from __future__ import annotations


class AutovibeError(Exception):
    """Base of every error autovibe raises on purpose. ``hint`` says what the user can do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class AutovibeInvalid(AutovibeError):
    """The request itself is wrong (bad name, unknown option). Exit code 2, HTTP 400."""


class AutovibeDenied(AutovibeError):
    """Policy or credentials refuse the action. Exit code 3, HTTP 403."""


class AutovibeNotFound(AutovibeError):
    """The named thing does not exist. Exit code 4, HTTP 404."""


class AutovibeConflict(AutovibeError):
    """The target is busy or in the wrong state (locked, running). Exit code 1, HTTP 409."""


class AutovibeUnavailable(AutovibeError):
    """PVE (or another dependency) cannot be reached or trusted right now. Exit code 1, HTTP 503."""


def error_kind(exc: BaseException) -> str:
    """The kind's short name, as faces and stored job errors spell it: ``invalid``, ``denied``,
    ``not_found``, ``conflict``, ``unavailable``, ``failed`` (any other autovibe error) or ``internal``
    (not raised on purpose: a bug)."""
    for kind, name in _KIND_NAMES:
        if isinstance(exc, kind):
            return name
    return "failed" if isinstance(exc, AutovibeError) else "internal"


# First match wins: a PVE transport error is "unavailable" although it is also a plain AutovibeError.
_KIND_NAMES: tuple[tuple[type[AutovibeError], str], ...] = (
    (AutovibeInvalid, "invalid"),
    (AutovibeDenied, "denied"),
    (AutovibeNotFound, "not_found"),
    (AutovibeConflict, "conflict"),
    (AutovibeUnavailable, "unavailable"),
)
