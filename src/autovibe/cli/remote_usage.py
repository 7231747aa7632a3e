"""The remote halves of the usage, quota, limits, network and metrics commands (see cli.remote)."""

from __future__ import annotations

COMMANDS: frozenset[str] = frozenset()
"""Command paths (``"checkpoint list"``) that work with ``--hub``."""
