"""The operations journal in the store: every state change is its own short transaction."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from autovibe.operations.errors import OperationNotFound
from autovibe.operations.models import OperationRecord, OpStatus, StepRecord, StepStatus
from autovibe.operations.owner import is_alive, this_process
from autovibe.store.db import Database
from autovibe.store.tables import Operation, OperationStep, utcnow


class Journal:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, kind: str, params: dict[str, Any], steps: list[str], *, actor: str) -> str:
        op_id = str(uuid.uuid4())
        with self.db.session() as session:
            op = Operation(
                id=op_id,
                kind=kind,
                status=OpStatus.RUNNING,
                params=params,
                state={},
                owner=this_process(),
                actor=actor,
            )
            op.steps = [
                OperationStep(index=i, name=name, status=StepStatus.PENDING) for i, name in enumerate(steps)
            ]
            session.add(op)
        return op_id

    def remember(self, op_id: str, state: dict[str, Any]) -> None:
        """Write-ahead: persist what a step is about to do, before it does it."""
        with self.db.session() as session:
            session.get_one(Operation, op_id).state = dict(state)

    def step(
        self,
        op_id: str,
        index: int,
        status: StepStatus,
        *,
        state: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self.db.session() as session:
            row = session.scalars(
                select(OperationStep).where(OperationStep.operation_id == op_id, OperationStep.index == index)
            ).one()
            row.status = status
            now = utcnow()
            if status in (StepStatus.RUNNING, StepStatus.COMPENSATING):
                row.started_at = row.started_at or now
            else:
                row.finished_at = now
            if error is not None:
                row.error = error[:2000]
            op = session.get_one(Operation, op_id)
            op.updated_at = now
            if state is not None:
                op.state = dict(state)

    def set_status(self, op_id: str, status: OpStatus, *, error: str | None = None) -> None:
        with self.db.session() as session:
            op = session.get_one(Operation, op_id)
            op.status = status
            if error is not None:
                op.error = error[:2000]

    def claim(self, op_id: str, expected_owner: str) -> bool:
        """Take over an orphaned operation; False if someone else already did."""
        with self.db.session() as session:
            op = session.get_one(Operation, op_id, with_for_update=True)
            if op.owner != expected_owner:
                return False
            op.owner = this_process()
            return True

    def get(self, op_id: str) -> OperationRecord:
        """By full id or a unique prefix (at least 4 characters), as ``ops show`` accepts it."""
        with self.db.session() as session:
            op = session.get(Operation, op_id, options=[selectinload(Operation.steps)])
            if op is None and len(op_id) >= 4:
                matches = session.scalars(
                    select(Operation)
                    .where(Operation.id.startswith(op_id))
                    .options(selectinload(Operation.steps))
                ).all()
                op = matches[0] if len(matches) == 1 else None
            if op is None:
                raise OperationNotFound(f"no operation '{op_id}'", hint="list them with `autovibe ops list`")
            return _record(op)

    def recent(
        self,
        *,
        unfinished: bool = False,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[OperationRecord]:
        """The newest operations first; only unfinished ones, of one ``kind``, or created at or after
        ``since`` when asked."""
        with self.db.session() as session:
            query = (
                select(Operation).options(selectinload(Operation.steps)).order_by(Operation.created_at.desc())
            )
            if unfinished:
                query = query.where(Operation.status.not_in([OpStatus.COMPLETED, OpStatus.COMPENSATED]))
            if kind is not None:
                query = query.where(Operation.kind == kind)
            if since is not None:
                query = query.where(Operation.created_at >= since)
            return [_record(op) for op in session.scalars(query.limit(limit))]

    def orphans(self, dead_owners: Collection[str] = ()) -> list[OperationRecord]:
        """Unfinished operations whose owning process is gone (or stuck ones, whoever owns them).

        ``dead_owners`` names owners known dead although they ran on another host (hub replicas whose
        heartbeat stopped); this host can check its own processes itself."""
        return [
            op
            for op in self.recent(unfinished=True, limit=10_000)
            if op.status is OpStatus.STUCK or op.owner in dead_owners or not is_alive(op.owner)
        ]


def _record(op: Operation) -> OperationRecord:
    return OperationRecord(
        id=op.id,
        kind=op.kind,
        status=OpStatus(op.status),
        params=dict(op.params),
        state=dict(op.state),
        error=op.error,
        owner=op.owner,
        actor=op.actor,
        created_at=op.created_at,
        updated_at=op.updated_at,
        steps=tuple(
            StepRecord(s.index, s.name, StepStatus(s.status), s.error, s.started_at, s.finished_at)
            for s in op.steps
        ),
    )


__all__ = ["Journal"]
