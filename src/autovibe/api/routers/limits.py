"""Limits: per-machine max CPU %, max memory %, max uptime (the usage pass records violations) and idle
auto-stop (a machine idle for the whole window is stopped)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autovibe.api.deps import Deps
from autovibe.machines import service as machines
from autovibe.machines.errors import MachineNotFound
from autovibe.security import rbac
from autovibe.usage import limits
from autovibe.usage.limits import LimitsRead

router = APIRouter(prefix="/machines", tags=["limits"])

RefPath = Annotated[str, Path(min_length=1, max_length=64, description="The machine's name or vmid")]
Percent = Annotated[float | None, Field(gt=0, le=100, allow_inf_nan=False)]
Seconds = Annotated[int | None, Field(ge=1, le=10 * 365 * 86400)]


class LimitsSet(BaseModel):
    """The limits to change: a field given with a value sets that limit, given as ``null`` clears it,
    left out keeps it as it is. Idle auto-stop needs both ``idle_cpu_pct`` and ``idle_for_s``."""

    model_config = ConfigDict(extra="forbid")

    max_cpu_pct: Percent = Field(default=None, description="Max CPU, % of its cores")
    max_mem_pct: Percent = Field(default=None, description="Max memory, % of its memory")
    max_uptime_s: Seconds = Field(default=None, description="Max time running since boot (s)")
    idle_cpu_pct: Percent = Field(default=None, description="Idle when CPU stays under this %...")
    idle_for_s: Seconds = Field(default=None, description="...for this long (s): then it is stopped")

    @model_validator(mode="after")
    def _something(self) -> LimitsSet:
        if not self.model_fields_set:
            raise ValueError("give at least one limit to set (or to clear, as null)")
        return self


def _readable(deps: Deps, ref: str) -> None:
    if ref.isdigit() and len(ref) > 12:  # no such vmid (and too large for the store's integers)
        raise MachineNotFound(f"no machine '{ref}'")
    row = machines.find(deps, ref)
    rbac.check(deps.identity, "machine.read", machines.project_of(deps, row))


@router.get("/{ref}/limits", response_model=LimitsRead)
def show_limits(deps: Deps, ref: RefPath) -> LimitsRead:
    """The machine's limits (``null``: not set) and its recent violations, newest first."""
    _readable(deps, ref)
    return limits.show(deps, ref)


@router.put("/{ref}/limits", response_model=LimitsRead)
def set_limits(deps: Deps, ref: RefPath, body: LimitsSet) -> LimitsRead:
    """Set or clear limits of the machine (operators and admins); limits not named stay as they were.
    Answers with all its limits and recent violations."""
    _readable(deps, ref)
    values = body.model_dump(include=body.model_fields_set)
    return limits.set_limits(deps, ref, **values)
