"""The gate wired into the services: project scope for reads and changes, risk, approvals, audit."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from autovibe.checkpoints import service as checkpoints
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.security import audit, identity
from autovibe.security.gate import ApprovalInvalid, ApprovalRequired, Gate, RiskDenied
from autovibe.security.rbac import AccessDenied
from autovibe.store.tables import Approval, Project
from autovibe.usage import quotas


async def deploy(deps: MachineDeps, profiles: Any, name: str, project: str, **labels: str) -> None:
    request = parse_request(
        MachineCreate, {"name": name, "profile": "claude_code", "project": project, "labels": labels}
    )
    [outcome] = (await fleet.deploy(deps, request, profiles, actor="t")).outcomes
    assert outcome.status == "deployed", outcome.error


@pytest.fixture
async def two_projects(deps: MachineDeps, profiles: Any) -> MachineDeps:
    with deps.db.session() as session:
        session.add(Project(name="beta", description=""))
    await deploy(deps, profiles, "a1", "alpha")
    await deploy(deps, profiles, "b1", "beta", critical="true")
    identity.add_user(deps.db, "olga")
    identity.bind(deps.db, "olga", "operator", "alpha")
    identity.add_user(deps.db, "ada")
    identity.bind(deps.db, "ada", "admin")
    return deps


def acting(deps: MachineDeps, name: str) -> MachineDeps:
    return dataclasses.replace(deps, identity=identity.identity_of(deps.db, name))


async def test_a_project_operator_sees_and_changes_only_its_project(two_projects: MachineDeps) -> None:
    olga = acting(two_projects, "olga")
    assert [m.name for m in await machines.list_machines(olga)] == ["a1"]
    with pytest.raises(AccessDenied):
        await machines.show(olga, "b1")
    with pytest.raises(AccessDenied):
        await machines.list_machines(olga, project="beta")
    with pytest.raises(AccessDenied):
        await checkpoints.tree(olga, "b1")
    with pytest.raises(AccessDenied):
        await checkpoints.create(olga, "b1", "nope", actor="olga")
    with pytest.raises(AccessDenied):
        await machines.delete(olga, "b1", actor="olga")
    with pytest.raises(AccessDenied):
        quotas.set_quota(olga.db, "alpha", "cpu_core_hours", 10, identity=olga.identity)  # not an operator's
    assert [s.project for s in quotas.status(olga.db, now=olga.now(), identity=olga.identity)] == ["alpha"]
    await checkpoints.create(olga, "a1", "mine", actor="olga")  # its own project: fine
    denied = [e for e in audit.list_entries(olga.db, actor="olga") if e.decision == "deny"]
    assert {e.action for e in denied} == {"checkpoint.create", "machine.delete", "quota.set"}


async def test_high_risk_is_held_then_approved_once_by_someone_else(two_projects: MachineDeps) -> None:
    admin = two_projects  # the local admin
    with pytest.raises(ApprovalRequired) as held:
        await machines.delete(admin, "b1", actor="local-admin")  # critical: risk 80
    request = held.value.approval_id
    with pytest.raises(Exception, match="cannot approve it too"):
        admin.security.decide(admin.identity, request, approve=True)
    with pytest.raises(ApprovalInvalid, match="pending"):
        await machines.delete(admin, "b1", actor="local-admin", approval=request)
    admin.security.decide(identity.identity_of(admin.db, "ada"), request, approve=True)
    with pytest.raises(ApprovalInvalid, match="not this request"):  # same target, other parameters
        await machines.delete(admin, "b1", actor="local-admin", reason="another", approval=request)
    await machines.delete(admin, "b1", actor="local-admin", approval=request)
    with admin.db.session() as session:
        assert session.get_one(Approval, request).status == "used"  # an approval runs one action, once
    outcomes = [
        (e.decision, e.outcome) for e in reversed(audit.list_entries(admin.db, action="machine.delete"))
    ]
    assert outcomes[0] == ("needs-approval", "held") and outcomes[-1] == ("allow", "succeeded")
    assert audit.verify(admin.db).ok


async def test_deny_threshold_refuses_outright(two_projects: MachineDeps) -> None:
    strict = dataclasses.replace(two_projects, security=Gate(two_projects.db, approve_at=10, deny_at=30))
    with pytest.raises(RiskDenied, match="too risky"):
        await machines.delete(strict, "a1", actor="local-admin")  # 40 >= 30
    assert [m.name for m in await machines.list_machines(strict)] == ["a1", "b1"]
