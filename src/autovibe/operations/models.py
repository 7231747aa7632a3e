"""Value types of the journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class OpStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"  # failed, and everything it did was undone
    STUCK = "stuck"  # compensation itself failed: `autovibe ops resume` tries again

    @property
    def finished(self) -> bool:
        return self in (OpStatus.COMPLETED, OpStatus.COMPENSATED)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"

    @property
    def touched(self) -> bool:
        """Whether the step may have had an effect that compensation must undo."""
        return self in (StepStatus.RUNNING, StepStatus.DONE, StepStatus.FAILED, StepStatus.COMPENSATING)


@dataclass(frozen=True)
class StepRecord:
    index: int
    name: str
    status: StepStatus
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class OperationRecord:
    id: str
    kind: str
    status: OpStatus
    params: dict[str, Any]
    state: dict[str, Any]
    error: str | None
    owner: str
    actor: str
    created_at: datetime
    updated_at: datetime
    steps: tuple[StepRecord, ...] = field(default=())

    @property
    def current_step(self) -> StepRecord | None:
        touched = [s for s in self.steps if s.status is not StepStatus.PENDING]
        return touched[-1] if touched else None
