"""What each kind of job runs. A handler gets a :class:`JobContext` (the submitter's identity already in
``deps``) and returns the job's JSON result; the errors it raises become the job's error.

Each area registers its kinds in its own module; importing this package imports them all. The API
validates and pre-checks a request before queueing it, so a handler re-validates only what can change
while the job waits (the service functions do that anyway: they run the security gate).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autovibe.errors import AutovibeError
from autovibe.hub.jobs import JobRead
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.profiles import Profile
from autovibe.settings import Settings
from autovibe.store.db import Database


@dataclass(frozen=True)
class JobContext:
    id: str
    params: dict[str, Any]
    deps: MachineDeps  # acting as the job's submitter
    settings: Settings
    profiles: Mapping[str, Profile]
    emit: Callable[[dict[str, Any]], None]  # one progress event (any replica can stream it)
    target_now: Callable[[], datetime]  # "now" on the PVE target's clock: usage and quotas use it

    @property
    def actor(self) -> str:
        return self.deps.identity.name

    @property
    def approval(self) -> str | None:
        value = self.params.get("approval")
        return str(value) if value else None


class JobPartlyFailed(AutovibeError):
    """Some of the job's work failed (machines of a fleet): the job fails, and keeps ``result`` (what
    each part did) beside its error."""

    def __init__(self, message: str, *, result: dict[str, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


Handler = Callable[[JobContext], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}
CancelReport = Callable[[Database, JobRead], dict[str, Any]]
CANCEL_REPORTS: dict[str, CancelReport] = {}
"""Per kind, what a cancelled job had done (its result); kinds without one report their progress events."""


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        if kind in HANDLERS:
            raise ValueError(f"job kind {kind!r} registered twice")
        HANDLERS[kind] = function
        return function

    return register


def cancel_report(kind: str) -> Callable[[CancelReport], CancelReport]:
    def register(function: CancelReport) -> CancelReport:
        CANCEL_REPORTS[kind] = function
        return function

    return register


def step_progress(job: JobContext, machine: str | None = None) -> Callable[[str, int, int], None]:
    """A journal ``progress`` callback (step, index, total) that becomes job events."""

    def report(step: str, index: int, total: int) -> None:
        job.emit({"type": "step", "machine": machine, "step": step, "index": index, "total": total})

    return report


AREAS = ("machines", "checkpoints", "network", "usage", "operations")


def load_all() -> dict[str, Handler]:
    """Import every area's handlers (registering them) and return the registry."""
    for area in AREAS:
        importlib.import_module(f"autovibe.hub.handlers.{area}")
    return HANDLERS
