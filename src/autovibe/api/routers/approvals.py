"""Approvals: high-risk actions the gate holds until another identity approves them.

The requester retries the same request with ``approval=<id>`` once it is approved. The two-person rule
(``security.two_person``) holds: the requester cannot approve its own request. Requests are shown to
whoever may ``approval.read`` in their project (those outside any project need a global role);
deciding one needs ``approval.approve`` / ``approval.reject`` (admins) where it applies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel
from sqlalchemy import func, select

from autovibe.api.deps import Caller, HubDep
from autovibe.hub.service import Hub
from autovibe.security import rbac
from autovibe.security.audit import redact
from autovibe.security.gate import ApprovalNotFound
from autovibe.security.identity import Identity
from autovibe.store.tables import Approval

router = APIRouter(prefix="/approvals", tags=["approvals"])

ApprovalId = Annotated[
    str,
    Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$", description="An id or a unique prefix"),
]


class ApprovalOut(BaseModel):
    """An approval request: what action on which target, why it is risky, who asked, its status
    (``pending``, ``approved``, ``rejected``, ``used``) and who decided it."""

    id: str
    action: str
    target: str
    project: str | None
    params: dict[str, Any]
    risk: int
    reasons: list[str]
    requested_by: str
    requested_at: datetime
    status: Literal["pending", "approved", "rejected", "used", "expired"]
    decided_by: str | None
    decided_at: datetime | None

    @classmethod
    def of(cls, row: Approval) -> ApprovalOut:
        params = row.params.get("params", {}) if isinstance(row.params, dict) else {}
        reasons = row.reasons.get("reasons", []) if isinstance(row.reasons, dict) else []
        return cls(
            id=row.id,
            action=row.action,
            target=row.target,
            project=row.project,
            params=redact(params) if isinstance(params, dict) else {},
            risk=row.risk,
            reasons=[str(reason) for reason in reasons],
            requested_by=row.requested_by,
            requested_at=row.requested_at,
            status=row.status,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
        )


def _visible(identity: Identity, row: Approval) -> bool:
    return row.requested_by == identity.name or rbac.can(identity, "approval.read", row.project)


def _find(hub: Hub, identity: Identity, approval_id: str) -> Approval:
    matching = Approval.id.startswith(approval_id)
    with hub.db.session() as session:
        rows = list(session.scalars(select(Approval).where(matching).limit(2)))
        for row in rows:
            session.expunge(row)
        many = (
            session.scalar(select(func.count()).select_from(Approval).where(matching)) if len(rows) > 1 else 0
        )
    exact = [row for row in rows if row.id == approval_id]
    if exact:
        rows = exact
    if len(rows) != 1 or not _visible(identity, rows[0]):
        # The same words as the gate's (and the CLI's on the hub host).
        message = f"'{approval_id}' matches {many} requests" if len(rows) > 1 else None
        raise ApprovalNotFound(message or f"no approval request '{approval_id}'")
    return rows[0]


@router.get("", response_model=list[ApprovalOut])
def list_approvals(hub: HubDep, identity: Caller) -> list[ApprovalOut]:
    """Pending approval requests, oldest first: yours, and those of projects you may read."""
    rows = sorted(hub.base_deps.security.pending(), key=lambda row: (row.requested_at, row.id))
    return [ApprovalOut.of(row) for row in rows if _visible(identity, row)]


@router.get("/{approval_id}", response_model=ApprovalOut)
def get_approval(hub: HubDep, identity: Caller, approval_id: ApprovalId) -> ApprovalOut:
    """One approval request (pending or decided) by id or a unique prefix."""
    return ApprovalOut.of(_find(hub, identity, approval_id))


@router.post("/{approval_id}/approve", response_model=ApprovalOut)
def approve(hub: HubDep, identity: Caller, approval_id: ApprovalId) -> ApprovalOut:
    """Approve a pending request (not your own while the two-person rule is on; 403 then). The
    requester then retries the same request with ``approval`` set to this id. Audited."""
    row = _find(hub, identity, approval_id)
    return ApprovalOut.of(hub.base_deps.security.decide(identity, row.id, approve=True))


@router.post("/{approval_id}/reject", response_model=ApprovalOut)
def reject(hub: HubDep, identity: Caller, approval_id: ApprovalId) -> ApprovalOut:
    """Reject a pending request: it can no longer let the action run. Audited."""
    row = _find(hub, identity, approval_id)
    return ApprovalOut.of(hub.base_deps.security.decide(identity, row.id, approve=False))
