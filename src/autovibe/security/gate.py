"""The gate every mutating service action passes: who, how risky, approved?, and an audit record.

``async with gate.guard(identity, action, target=..., project=..., subject=..., params=...)`` runs the
checks in order and records each decision in the audit log before anything happens:

1. roles (:mod:`autovibe.security.rbac`): a refusal is recorded and raised (exit code 3, HTTP 403);
2. risk (:mod:`autovibe.security.risk`): from ``deny_at`` the action is refused; from ``approve_at``
   it is held: a pending approval is stored and ``ApprovalRequired`` names its id, and the action runs
   only when retried with ``approval=<id>`` after another identity approved it (the two-person rule;
   approving one's own request is refused while it is on). ``--yes`` on the command line never
   approves anything: it only skips a confirmation prompt;
3. the action runs inside the block; its outcome (succeeded or failed, with the error) is recorded.

System identities (the hub's scheduler acting on policies the admins set) are held to roles and
recorded, but not stopped for approval: the policy itself was the approved decision.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select

from autovibe.errors import AutovibeConflict, AutovibeDenied, AutovibeNotFound
from autovibe.security import audit, rbac
from autovibe.security.identity import Binding, Identity
from autovibe.security.risk import Risk, Subject, assess
from autovibe.store.db import Database
from autovibe.store.tables import Approval

HUB: Final = Identity("hub", (Binding("admin", None),), "system")
"""The hub's scheduler: acts on policies admins set (quotas, schedules, leases, idle limits)."""


class RiskDenied(AutovibeDenied):
    """The action is too risky to run at all under the configured thresholds."""


class ApprovalRequired(AutovibeDenied):
    """The action is held until another identity approves it; ``approval_id`` names the request."""

    def __init__(self, message: str, *, approval_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.approval_id = approval_id


class ApprovalNotFound(AutovibeNotFound, KeyError):
    def __str__(self) -> str:
        return self.message


class ApprovalInvalid(AutovibeConflict):
    """The approval exists but does not let this action run (pending, rejected, used, another action)."""


@dataclass
class Permit:
    """An admitted action; used as a context manager it records whether the action succeeded."""

    gate: Gate
    identity: Identity
    action: str
    target: str
    project: str | None
    risk: Risk
    details: dict[str, Any]

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        outcome = "succeeded" if exc is None else "failed"
        params = self.details if exc is None else {**self.details, "error": str(exc)[:500]}
        self.gate._record(
            self.identity,
            self.action,
            self.target,
            self.project,
            decision="allow",
            outcome=outcome,
            risk=self.risk.score,
            params=params,
        )


def _fingerprint(action: str, target: str, params: Mapping[str, Any]) -> str:
    """What an approval approves: this action on this target with these parameters, nothing else."""
    text = json.dumps({"action": action, "target": target, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Gate:
    db: Database
    approve_at: int = 50
    deny_at: int = 90
    two_person: bool = True
    audit_key: bytes | None = None

    def _record(
        self,
        identity: Identity,
        action: str,
        target: str,
        project: str | None,
        *,
        decision: str,
        outcome: str,
        risk: int,
        params: Mapping[str, Any],
    ) -> None:
        audit.append(
            self.db,
            actor=identity.name,
            action=action,
            target=target,
            project=project,
            decision=decision,
            outcome=outcome,
            risk=risk,
            params=dict(params),
            key=self.audit_key,
        )

    def precheck(
        self,
        identity: Identity,
        action: str,
        *,
        target: str,
        project: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """The role check alone, before work is queued (the hub's 202 answers): a refusal is recorded
        and raised now, so the caller gets a 403 instead of a job that fails later. Risk and approval
        are weighed by :meth:`admit` when the work runs, on the parameters it runs with."""
        try:
            rbac.check(identity, action, project)
        except AutovibeDenied:
            self._record(
                identity, action, target, project, decision="deny", outcome="refused", risk=0,
                params=dict(params or {}),
            )  # fmt: skip
            raise

    def admit(
        self,
        identity: Identity,
        action: str,
        *,
        target: str,
        project: str | None = None,
        subject: Subject | None = None,
        params: Mapping[str, Any] | None = None,
        approval: str | None = None,
    ) -> Permit:
        """Check roles, risk and approval, and record the decision; raises when the action may not run.
        The returned permit records the outcome (prefer :meth:`guard`, which does that for you)."""
        params = dict(params or {})
        self.precheck(identity, action, target=target, project=project, params=params)
        risk = assess(subject or Subject(action))
        details = {**params, "risk_reasons": list(risk.reasons)}
        if risk.score >= self.deny_at and identity.kind != "system":
            self._record(
                identity,
                action,
                target,
                project,
                decision="deny",
                outcome="refused",
                risk=risk.score,
                params=details,
            )
            raise RiskDenied(
                f"{action} on {target} is too risky to run (risk {risk.score}: {'; '.join(risk.reasons)})",
                hint=f"the limit is security.deny_at = {self.deny_at}",
            )
        if risk.score >= self.approve_at and identity.kind != "system":
            if approval is None:
                approval_id = self._hold(identity, action, target, project, params, risk)
                self._record(
                    identity,
                    action,
                    target,
                    project,
                    decision="needs-approval",
                    outcome="held",
                    risk=risk.score,
                    params={**details, "approval": approval_id},
                )
                raise ApprovalRequired(
                    f"{action} on {target} needs an approval (risk {risk.score}: {'; '.join(risk.reasons)}); "
                    f"request {approval_id[:8]} is waiting",
                    approval_id=approval_id,
                    hint=f"another identity with the right role runs `autovibe approve {approval_id[:8]}`, "
                    f"then retry with --approval {approval_id[:8]}",
                )
            self._use_approval(identity, approval, action, target, params)
            details["approval"] = approval
        self._record(
            identity,
            action,
            target,
            project,
            decision="allow",
            outcome="started",
            risk=risk.score,
            params=details,
        )
        return Permit(self, identity, action, target, project, risk, details)

    @asynccontextmanager
    async def guard(
        self,
        identity: Identity,
        action: str,
        *,
        target: str,
        project: str | None = None,
        subject: Subject | None = None,
        params: Mapping[str, Any] | None = None,
        approval: str | None = None,
    ) -> AsyncIterator[Risk]:
        """Admit the action, run the block, record its outcome (see the module docstring)."""
        permit = self.admit(
            identity,
            action,
            target=target,
            project=project,
            subject=subject,
            params=params,
            approval=approval,
        )
        with permit:
            yield permit.risk

    def guard_sync(
        self,
        identity: Identity,
        action: str,
        *,
        target: str,
        project: str | None = None,
        subject: Subject | None = None,
        params: Mapping[str, Any] | None = None,
        approval: str | None = None,
    ) -> Permit:
        """:meth:`guard` for synchronous code: ``with gate.guard_sync(...):``."""
        return self.admit(
            identity,
            action,
            target=target,
            project=project,
            subject=subject,
            params=params,
            approval=approval,
        )

    def _hold(
        self,
        identity: Identity,
        action: str,
        target: str,
        project: str | None,
        params: dict[str, Any],
        risk: Risk,
    ) -> str:
        approval_id = str(uuid.uuid4())
        with self.db.session() as session:
            session.add(
                Approval(
                    id=approval_id,
                    action=action,
                    target=target,
                    project=project,
                    params={"params": params, "fingerprint": _fingerprint(action, target, params)},
                    risk=risk.score,
                    reasons={"reasons": list(risk.reasons)},
                    requested_by=identity.name,
                    status="pending",
                )
            )
        return approval_id

    def _use_approval(
        self, identity: Identity, approval_id: str, action: str, target: str, params: dict[str, Any]
    ) -> None:
        with self.db.session() as session:
            row = session.get(Approval, self._full_id(approval_id))
            if row is None:
                raise ApprovalNotFound(f"no approval request '{approval_id}'")
            if row.params.get("fingerprint") != _fingerprint(action, target, params):
                raise ApprovalInvalid(
                    f"approval {row.id[:8]} was for {row.action} on {row.target}, not this request",
                    hint="an approval covers one action with exactly its parameters",
                )
            if row.status != "approved":
                raise ApprovalInvalid(
                    f"approval {row.id[:8]} is {row.status}, not approved",
                    hint="ask another identity to run `autovibe approve` first"
                    if row.status == "pending"
                    else None,
                )
            if row.requested_by != identity.name:
                raise ApprovalInvalid(
                    f"approval {row.id[:8]} was requested by {row.requested_by}, not by you"
                )
            row.status = "used"

    def _full_id(self, prefix: str) -> str:
        with self.db.session() as session:
            ids = list(session.scalars(select(Approval.id).where(Approval.id.startswith(prefix))))
        if len(ids) != 1:
            raise ApprovalNotFound(
                f"no approval request '{prefix}'" if not ids else f"'{prefix}' matches {len(ids)} requests"
            )
        return ids[0]

    def decide(self, identity: Identity, approval_id: str, *, approve: bool) -> Approval:
        """Approve or reject a pending request. With the two-person rule on, not one's own."""
        full = self._full_id(approval_id)
        with self.db.session() as session:
            request = session.get_one(Approval, full)
            session.expunge(request)
        action = "approval.approve" if approve else "approval.reject"
        target = f"approval {full}"
        refused = {"for": request.action, "on": request.target}
        try:
            rbac.check(identity, action, request.project)
        except AutovibeDenied:
            self._record(identity, action, target, request.project, decision="deny", outcome="refused",
                         risk=request.risk, params=refused)  # fmt: skip
            raise
        if request.status != "pending":
            raise ApprovalInvalid(f"approval {full[:8]} is already {request.status}")
        if approve and self.two_person and request.requested_by == identity.name:
            self._record(identity, action, target, request.project, decision="deny", outcome="refused",
                         risk=request.risk, params={**refused, "reason": "two-person rule"})  # fmt: skip
            raise AutovibeDenied(
                f"{identity.name} requested {request.action} on {request.target} and cannot approve it too",
                hint="the two-person rule (security.two_person) needs another identity with the role",
            )
        with self.db.session() as session:
            row = session.get_one(Approval, full)
            if row.status != "pending":  # decided by someone else meanwhile
                raise ApprovalInvalid(f"approval {full[:8]} is already {row.status}")
            row.status = "approved" if approve else "rejected"
            row.decided_by, row.decided_at = identity.name, datetime.now(UTC)
            session.flush()
            session.expunge(row)
        self._record(identity, action, target, row.project, decision="allow", outcome="succeeded",
                     risk=row.risk, params=refused)  # fmt: skip
        return row

    def pending(self) -> list[Approval]:
        with self.db.session() as session:
            rows = list(session.scalars(select(Approval).where(Approval.status == "pending")))
            for row in rows:
                session.expunge(row)
            return rows
