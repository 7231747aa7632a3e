"""The one interface every planner implements, and the inventory summary planners may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from autovibe.ai.plan import Plan
from autovibe.errors import AutovibeUnavailable


@dataclass(frozen=True)
class InventoryMachine:
    name: str
    vmid: int
    project: str
    profile: str
    status: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanningContext:
    """What a planner knows about the world: a compact inventory, never secrets."""

    projects: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    network_profiles: tuple[str, ...] = ()
    machines: tuple[InventoryMachine, ...] = ()
    default_project: str | None = None


@dataclass(frozen=True)
class PlannerResult:
    plan: Plan
    planner: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class Planner(Protocol):
    name: str

    async def plan(self, request: str, context: PlanningContext) -> PlannerResult:
        """Turn ``request`` into a plan (or a clarification question). Raises ``PlannerError`` when the
        model's output is not a valid plan or the service cannot be reached."""
        ...


class PlannerError(AutovibeUnavailable):
    """A planner could not produce a valid plan (bad model output, unreachable service): exit code 1,
    nothing run."""
