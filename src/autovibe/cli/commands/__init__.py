"""One module per command group, each exposing ``app = typer.Typer(...)``; loaded lazily by ``cli.main``.

Helpers every command uses live here: the global options (:class:`CliState`), building the settings
once at the edge (:func:`load_cli_settings`) and running async services (:func:`run`). Keep this
module light: it is imported before any command runs, heavy imports belong inside functions.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from autovibe.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class CliState:
    """The root options, stored in ``ctx.obj`` by the root callback.

    ``overrides`` are flag values keyed by ``Settings`` field name (``None`` = flag not given).
    """

    config_path: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    verbose: int = 0


def cli_state(ctx: typer.Context) -> CliState:
    """The root options for this invocation (defaults when the root callback did not run)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def load_cli_settings(ctx: typer.Context) -> Settings:
    """Build the settings once for this command (flags > ``AUTOVIBE_*`` env > config file >
    defaults) and configure logging from them.

    Raises ``SettingsInvalid`` (exit code 2) naming the bad setting.
    """
    from autovibe.settings import load_settings

    state = cli_state(ctx)
    settings = load_settings(config_path=state.config_path, overrides=state.overrides)
    configure_logging(settings.log_level, verbose=state.verbose)
    return settings


def show_help_without_subcommand(ctx: typer.Context) -> None:
    """For a group callback: print the group's help and exit 0 when no subcommand was named."""
    if ctx.invoked_subcommand is None:
        from autovibe.cli import render

        render.help_text(ctx.get_help())
        raise typer.Exit()


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Log keys whose values are credentials; matched as substrings, case-insensitively.
_SECRET_KEYS = ("password", "secret", "token", "ticket", "authorization", "cookie", "csrf")


def configure_logging(level: str, *, verbose: int = 0) -> None:
    """structlog to stderr (stdout is for output and ``--json``): JSON lines when stderr is not a
    terminal, readable lines when it is; ``-v`` lowers the level to info, ``-vv`` to debug.
    Values under secret-looking keys are replaced before any renderer sees them."""
    import logging
    import sys

    import structlog

    threshold = min(_LEVELS.get(level, 30), {0: 50, 1: 20}.get(verbose, 10))
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=threshold, stream=sys.stderr)


def _redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event:
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "**********"
    return event


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async service call at the CLI's edge (one event loop per command)."""
    import asyncio  # not at module level: `autovibe --help` must not pay for it

    return asyncio.run(coro)


def json_envelope(settings: Settings) -> dict[str, object]:
    """The keys every ``--json`` answer starts with: which cluster it is about, and whether simulated."""
    from autovibe.composition import describe_target

    return {"target": describe_target(settings), "simulated": settings.is_simulated}
