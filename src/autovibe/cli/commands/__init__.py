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
    """Build the settings once for this command: flags > ``AUTOVIBE_*`` env > config file > defaults.

    Raises ``SettingsInvalid`` (exit code 2) naming the bad setting.
    """
    from autovibe.settings import load_settings

    state = cli_state(ctx)
    return load_settings(config_path=state.config_path, overrides=state.overrides)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async service call at the CLI's edge (one event loop per command)."""
    import asyncio  # not at module level: `autovibe --help` must not pay for it

    return asyncio.run(coro)
