"""Operations: the journal of every mutating workflow (deploys, deletes, checkpoints...), and resuming
the ones a dead process left unfinished (a job, like ``autovibe ops resume``).

Who sees what: an operation is shown to the identity that started it, and to whoever may
``ops.read`` in its project (the ``project`` of its parameters, when it names one). Operations that
name no project (deletes, prunes, quota stops...) need a global role, so a project-scoped caller never
sees another project's work.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, HubDep, submit
from autovibe.operations.errors import OperationNotFound
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord, OpStatus, StepStatus
from autovibe.security import rbac
from autovibe.security.audit import redact
from autovibe.security.identity import Identity

router = APIRouter(prefix="/operations", tags=["operations"])

OperationId = Annotated[
    str,
    Path(min_length=4, max_length=36, pattern=r"^[0-9a-f-]+$", description="An id or a unique prefix"),
]


class StepOut(BaseModel):
    index: int
    name: str
    status: StepStatus
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class OperationOut(BaseModel):
    """A journaled operation: its parameters and what it remembered (secrets masked), and its steps."""

    id: str
    kind: str
    status: OpStatus
    project: str | None
    params: dict[str, Any]
    state: dict[str, Any]
    error: str | None
    owner: str
    actor: str
    created_at: datetime
    updated_at: datetime
    steps: list[StepOut]

    @classmethod
    def of(cls, record: OperationRecord) -> OperationOut:
        data = asdict(record)
        data["params"], data["state"] = redact(record.params), redact(record.state)
        return cls.model_validate({**data, "project": project_of(record)})


def project_of(record: OperationRecord) -> str | None:
    project = record.params.get("project")
    return project if isinstance(project, str) else None


def visible(identity: Identity, record: OperationRecord) -> bool:
    return record.actor == identity.name or rbac.can(identity, "ops.read", project_of(record))


@router.get("", response_model=list[OperationOut])
def list_operations(
    hub: HubDep,
    identity: Caller,
    unfinished: Annotated[bool, Query(description="Only running, compensating or stuck ones")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OperationOut]:
    """Recent operations, newest first (only unfinished ones with ``unfinished=true``): those you
    started, and those of projects you may read (operations naming no project need a global role)."""
    journal = Journal(hub.db)
    # Read a wider window than asked, so that hiding other projects' work still fills the page.
    records = journal.recent(unfinished=unfinished, limit=min(10 * limit, 10_000))
    return [OperationOut.of(r) for r in records if visible(identity, r)][:limit]


@router.get("/{op_id}", response_model=OperationOut)
def get_operation(hub: HubDep, identity: Caller, op_id: OperationId) -> OperationOut:
    """One operation by id (or a unique prefix of at least 4 characters), with each step's status,
    times and error."""
    record = Journal(hub.db).get(op_id)
    if not visible(identity, record):
        raise OperationNotFound(f"no operation '{op_id}'")  # not "forbidden": do not confirm it exists
    return OperationOut.of(record)


@router.post("/resume", status_code=202, responses=ACCEPTED_RESPONSE)
def resume_operations(hub: HubDep, identity: Caller) -> JSONResponse:
    """Finish or undo every operation whose process died, and retry stuck ones, as a job (like
    ``autovibe ops resume``): a deploy is undone, a delete is finished. Needs a global operator or
    admin role. The job's result lists each operation resumed (``was`` and its new ``status``) and how
    many are still ``stuck``; with nothing to resume it succeeds with an empty list."""
    return submit(
        hub, identity, "ops.resume", {}, action="ops.resume", target="orphaned operations", project=None
    )
