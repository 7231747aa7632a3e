"""``autovibe approve ID``: the shortcut for ``autovibe approval approve ID``."""

from __future__ import annotations

from autovibe.cli.commands.approval import approve_app as app

__all__ = ["app"]
