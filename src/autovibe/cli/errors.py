"""The one table from error kinds to exit codes, and the one-line message a failure shows.

Exit codes (DESIGN §5): 0 ok, 1 operation failed, 2 usage or validation error, 3 denied, 4 not found.
Concrete errors are mapped by their *kind* (``PvePermissionDenied`` is an ``AutovibeDenied``), so a
new error class needs no change here. Imports no heavy modules: it runs on every failing command.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer

from autovibe.errors import (
    AutovibeConflict,
    AutovibeDenied,
    AutovibeError,
    AutovibeInvalid,
    AutovibeNotFound,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

# First match wins, so the specific kinds come before their base.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (AutovibeInvalid, EXIT_USAGE),
    (AutovibeDenied, EXIT_DENIED),
    (AutovibeNotFound, EXIT_NOT_FOUND),
    # The target's state refuses the action (locked, ZFS needs --discard-newer, pinned): the request was
    # well formed, so it is a failed operation, not a usage error.
    (AutovibeConflict, EXIT_FAILED),
    (AutovibeError, EXIT_FAILED),  # PveError, PveTaskFailed, AutovibeConflict, AutovibeUnavailable...
)


@dataclass(frozen=True)
class Failure:
    """What the CLI shows for an exception: exit ``code``, one-line ``message``, optional ``hint``."""

    code: int
    message: str
    hint: str | None = None
    expected: bool = True
    """False for bugs (exceptions autovibe did not raise on purpose); -v then shows the traceback."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code for ``exc`` by its kind; anything unknown is 1 (operation failed)."""
    if isinstance(exc, typer.TyperException):  # click usage errors carry exit_code 2
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILED


def describe_failure(exc: BaseException) -> Failure:
    """Turn any exception into the exit code and the single line (plus hint) shown on stderr."""
    code = exit_code_for(exc)
    if isinstance(exc, typer.TyperException):
        # Usage errors stay on one line: the pointer to --help goes into the message itself.
        return Failure(code, _with_usage_hint(_one_line(exc.format_message()), exc))
    if isinstance(exc, typer.Abort):
        return Failure(EXIT_FAILED, "aborted")
    if isinstance(exc, KeyboardInterrupt):
        return Failure(code, "interrupted")
    if isinstance(exc, AutovibeError):
        return Failure(code, _one_line(str(exc)), exc.hint)
    if isinstance(exc, OSError) and exc.filename is not None:
        # Unwritable data dir, unreadable CA file...: the user's environment, not a bug.
        return Failure(code, _one_line(f"{exc.strerror or exc}: {exc.filename}"))
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Failure(
        code,
        _one_line(f"internal error ({detail})"),
        "rerun with -v to see the traceback, and please report it",
        expected=False,
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else "failed"


def _with_usage_hint(message: str, exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", None)
    return f"{message} (see '{command_path} --help')" if command_path else message
