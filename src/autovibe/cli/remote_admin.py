"""The remote halves of the audit, approval, user, token and role commands: see :mod:`autovibe.cli.remote`."""

from __future__ import annotations

COMMANDS: frozenset[str] = frozenset()
"""Command paths (``"checkpoint list"``) that work with ``--hub``."""
