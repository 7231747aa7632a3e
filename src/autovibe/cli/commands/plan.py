"""``autovibe plan "..."``: the plan a planner makes of a request (see ``ask``)."""

from __future__ import annotations

from autovibe.cli.commands.ask import plan_app as app

__all__ = ["app"]
