"""One module per command group, each exposing ``app = typer.Typer(...)``; loaded lazily by ``cli.main``.

Helpers every command uses live here: the global options (:class:`CliState`), building the settings
once at the edge (:func:`load_cli_settings`) and running async services (:func:`run`). Keep this
module light: it is imported before any command runs, heavy imports belong inside functions.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
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
    from autovibe.security.secrets import register_settings_secrets
    from autovibe.settings import load_settings

    state = cli_state(ctx)
    settings = load_settings(config_path=state.config_path, overrides=state.overrides)
    if settings.hub_url is not None:
        # A command without a remote half must not quietly act on the local store instead of the hub.
        from autovibe.cli.remote import refuse_unsupported

        refuse_unsupported(ctx.command_path.split()[1:])
    register_settings_secrets(settings)
    configure_logging(settings.log_level, verbose=state.verbose)
    _warn_about_config_permissions(state)
    return settings


_warned_configs: set[Path] = set()


def _warn_about_config_permissions(state: CliState) -> None:
    """Once per process and file: a config file holding secrets that other users can read."""
    import os

    from autovibe.cli import render
    from autovibe.security.secrets import config_permissions_warning
    from autovibe.settings import CONFIG_ENV, default_config_path

    env_path = os.environ.get(CONFIG_ENV)  # the same choice load_settings makes
    path = state.config_path or (Path(env_path).expanduser() if env_path else default_config_path())
    if path in _warned_configs:
        return
    _warned_configs.add(path)
    warning = config_permissions_warning(path)
    if warning is not None:
        render.note(f"warning: {warning}")


def show_help_without_subcommand(ctx: typer.Context) -> None:
    """For a group callback: print the group's help and exit 0 when no subcommand was named."""
    if ctx.invoked_subcommand is None:
        from autovibe.cli import render

        render.help_text(ctx.get_help())
        raise typer.Exit()


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def configure_logging(level: str, *, verbose: int = 0) -> None:
    """structlog to stderr (stdout is for output and ``--json``): JSON lines when stderr is not a
    terminal, readable lines when it is; ``-v`` lowers the level to info, ``-vv`` to debug.
    Secrets (values under secret-looking keys, token-like text, registered values) are masked before
    any renderer sees them, in autovibe's structlog events and in stdlib records of libraries alike."""
    import logging
    import sys

    import structlog

    from autovibe.security.secrets import RedactingFilter, redact_processor

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
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=threshold, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async service call at the CLI's edge (one event loop per command)."""
    import asyncio  # not at module level: `autovibe --help` must not pay for it

    return asyncio.run(coro)


def json_envelope(settings: Settings) -> dict[str, object]:
    """The keys every ``--json`` answer starts with: which cluster it is about, and whether simulated."""
    from autovibe.composition import describe_target

    if settings.hub_url is not None:  # the hub knows whether its cluster is simulated, not this host
        from autovibe.cli.remote import hub_info

        return {"target": describe_target(settings), "simulated": bool(hub_info(settings)["simulated"])}
    return {"target": describe_target(settings), "simulated": settings.is_simulated}
