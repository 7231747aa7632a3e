"""Audit: the tamper-evident log of every gate decision and every action it let through — list,
show, verify the hash chain, export as JSON Lines.

Reading it needs ``audit.read`` (auditors and admins): globally for the whole log, or in one project
with ``project=`` (a project-scoped auditor sees that project's entries only). Verifying and exporting
the whole chain need a global auditor or admin. A refusal is itself audited.
"""

from __future__ import annotations

import io
import re
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BeforeValidator

from autovibe import composition
from autovibe.api.deps import Caller, HubDep
from autovibe.api.errors import ApiError
from autovibe.security import audit
from autovibe.security.audit import AuditRecord, VerifyResult

router = APIRouter(prefix="/audit", tags=["audit"])

NDJSON = "application/x-ndjson"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ANCHOR = re.compile(r"(\d{1,18}):([0-9a-fA-F]{64})")
_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")


def _iso_time(value: object) -> object:
    # pydantic would read a bare number as Unix seconds; the schema promises an ISO 8601 date-time.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("give an ISO 8601 time such as 2026-11-22T10:00:00Z, not a number")
    return value


@router.get("", response_model=list[AuditRecord])
def list_entries(
    hub: HubDep,
    identity: Caller,
    limit: Annotated[int, Query(ge=1, le=100_000, description="At most this many, newest first")] = 100,
    after: Annotated[
        AwareDatetime | None,
        BeforeValidator(_iso_time),
        Query(description="Only entries at or after this time (ISO 8601 with a zone)"),
    ] = None,
    actor: Annotated[str | None, Query(max_length=128, pattern=_NAME)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=_NAME, examples=["machine.create"])] = None,
    project: Annotated[str | None, Query(max_length=64, pattern=_NAME)] = None,
) -> list[AuditRecord]:
    """The newest audit entries matching every filter given, newest first (parameters already
    redacted). Without ``project`` it needs a global ``audit.read``; with it, ``audit.read`` in it."""
    hub.base_deps.security.precheck(identity, "audit.read", target="audit log", project=project)
    try:
        since = after.astimezone(UTC) if after is not None else None
    except (OverflowError, ValueError):
        raise ApiError("invalid", "after: not a time the log can hold") from None
    return audit.list_entries(hub.db, since=since, actor=actor, action=action, project=project, limit=limit)


@router.get("/verify", response_model=VerifyResult)
def verify(
    hub: HubDep,
    identity: Caller,
    anchor: Annotated[
        str | None,
        Query(
            max_length=90,
            pattern=r"^\d{1,18}:[0-9a-fA-F]{64}$",
            description="ID:HASH, a head an earlier verify reported: also fail if that entry is gone or "
            "different (entries cut from the end leave no trace in the chain otherwise)",
        ),
    ] = None,
) -> VerifyResult:
    """Recompute the hash chain (with the HMAC key when one is configured): ``ok`` with the head to
    keep as an anchor (``head_id:head_hash``), or the first entry that cannot be trusted and why. A
    broken chain is still a 200: the answer is the verdict."""
    hub.base_deps.security.precheck(identity, "audit.verify", target="audit log")
    expected: tuple[int, str] | None = None
    if anchor is not None:
        match = _ANCHOR.fullmatch(anchor)
        if match is None:  # the pattern already holds; kept for the type checker
            raise ApiError("invalid", "anchor: expected ID:HASH")
        expected = int(match.group(1)), match.group(2).lower()
    return audit.verify(hub.db, key=composition.audit_key(hub.settings), anchor=expected)


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}, "description": "JSON Lines"}},
)
def export(hub: HubDep, identity: Caller) -> Response:
    """Every entry, oldest first, one JSON object per line (``application/x-ndjson``), with
    ``prev_hash`` and ``hash`` so the copy can be verified elsewhere."""
    hub.base_deps.security.precheck(identity, "audit.export", target="audit log")
    buffer = io.StringIO()
    audit.export_jsonl(hub.db, buffer)
    return Response(buffer.getvalue(), media_type=NDJSON)


@router.get("/{entry_id}", response_model=AuditRecord)
def get_entry(hub: HubDep, identity: Caller, entry_id: Annotated[int, Path(ge=1, le=2**62)]) -> AuditRecord:
    """One entry with its parameters (secrets masked) and its place in the hash chain. Needs
    ``audit.read`` globally, or in the entry's project."""
    record = audit.get(hub.db, entry_id)
    hub.base_deps.security.precheck(
        identity, "audit.read", target=f"audit entry {entry_id}", project=record.project
    )
    return record
