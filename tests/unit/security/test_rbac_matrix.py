"""Every role, bound globally or in project alpha, against every action on a target in alpha (its own
project), in beta (another project) and outside any project.

The expectations are written out here by hand from DESIGN §4 and the role descriptions, not read from
``rbac.ACTIONS``: a change to the table that is not also made here fails.
"""

from __future__ import annotations

import pytest

from autovibe.errors import AutovibeDenied
from autovibe.security import rbac
from autovibe.security.identity import LOCAL_ADMIN, Binding, Identity, system_identity

VIEWER, OPERATOR, ADMIN, AUDITOR = "viewer", "operator", "admin", "auditor"

# Who may do each action: V viewer, O operator, A admin, U auditor.
EXPECTED: dict[str, str] = {
    # reads: everyone
    "project.read": "VOAU", "machine.read": "VOAU", "checkpoint.read": "VOAU", "usage.read": "VOAU",
    "quota.read": "VOAU", "network.read": "VOAU", "ops.read": "VOAU", "policy.read": "VOAU",
    "cluster.read": "VOAU", "approval.read": "VOAU",
    # running machines and checkpoints: operators and admins
    "machine.create": "OA", "machine.start": "OA", "machine.stop": "OA", "machine.shutdown": "OA",
    "machine.reboot": "OA", "machine.delete": "OA", "machine.extend": "OA",
    "checkpoint.create": "OA", "checkpoint.restore": "OA", "checkpoint.branch": "OA",
    "checkpoint.delete": "OA", "checkpoint.pin": "OA", "checkpoint.unpin": "OA",
    "retention.apply": "OA", "network.apply": "OA", "ops.resume": "OA", "limits.set": "OA",
    "ai.plan": "OA", "machine.resize": "OA",
    # configuration: admins
    "project.create": "A", "project.delete": "A",
    "policy.set": "A", "policy.delete": "A", "policy.attach": "A", "policy.detach": "A",
    "schedule.set": "A", "schedule.remove": "A",
    "quota.set": "A", "quota.unset": "A", "quota.enforce": "A", "network.refresh": "A", "hub.tick": "A",
    # identities, secrets, approvals: admins
    "user.add": "A", "user.disable": "A", "user.enable": "A",
    "token.create": "A", "token.revoke": "A", "role.bind": "A", "role.unbind": "A",
    "secret.set": "A", "secret.delete": "A", "secret.rotate": "A",
    "approval.approve": "A", "approval.reject": "A",
    # the audit log and who holds which access: auditors and admins
    "audit.read": "AU", "audit.verify": "AU", "audit.export": "AU",
    "user.list": "AU", "token.list": "AU", "role.list": "AU",
}  # fmt: skip

# Allowed only through a global binding, whatever the target's project.
GLOBAL: set[str] = {
    "user.add", "user.disable", "user.enable", "user.list", "token.create", "token.revoke", "token.list",
    "role.bind", "role.unbind", "role.list", "secret.set", "secret.delete", "secret.rotate",
    "project.create", "network.refresh", "quota.enforce", "hub.tick", "policy.set", "policy.delete",
}  # fmt: skip

LETTER = {VIEWER: "V", OPERATOR: "O", ADMIN: "A", AUDITOR: "U"}
TARGETS = ("alpha", "beta", None)


def expected_cells(role: str, action: str) -> dict[tuple[str, str | None], bool]:
    """(binding scope, target project) -> allowed, for ``role`` and ``action``."""
    holds = LETTER[role] in EXPECTED[action]
    cells: dict[tuple[str, str | None], bool] = {}
    for target in TARGETS:
        cells[("global", target)] = holds
        cells[("alpha", target)] = holds and target == "alpha" and action not in GLOBAL
    return cells


def test_the_table_names_exactly_these_actions_and_roles() -> None:
    assert set(rbac.ACTIONS) == set(EXPECTED)
    assert rbac.ROLES == (VIEWER, OPERATOR, ADMIN, AUDITOR)
    assert rbac.GLOBAL_ONLY == GLOBAL


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", [VIEWER, OPERATOR, ADMIN, AUDITOR])
def test_role_action_matrix(role: str, action: str) -> None:
    identities = {
        "global": Identity("bob", (Binding(role, None),)),
        "alpha": Identity("bob", (Binding(role, "alpha"),)),
    }
    actual = {
        (scope, target): rbac.can(identities[scope], action, target)
        for scope in identities
        for target in TARGETS
    }
    assert actual == expected_cells(role, action)
    for (scope, target), allowed in actual.items():
        if allowed:
            rbac.check(identities[scope], action, target)
        else:
            with pytest.raises(rbac.AccessDenied):
                rbac.check(identities[scope], action, target)


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_local_admin_and_the_hub_may_do_everything(action: str) -> None:
    hub = system_identity("hub")
    for target in TARGETS:
        assert rbac.can(LOCAL_ADMIN, action, target)
        assert rbac.can(hub, action, target)
        rbac.check(LOCAL_ADMIN, action, target)


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_no_roles_no_access(action: str) -> None:
    nobody = Identity("carol", ())
    assert not any(rbac.can(nobody, action, target) for target in TARGETS)


@pytest.mark.parametrize(
    "action",
    [
        "machine.read", "machine.stop", "machine.delete",
        "checkpoint.read", "checkpoint.restore", "checkpoint.delete",
        "quota.read", "quota.set", "usage.read",
    ],
)  # fmt: skip
def test_a_project_operator_cannot_touch_another_projects_machines_checkpoints_or_quotas(action: str) -> None:
    bob = Identity("bob", (Binding(OPERATOR, "alpha"),))
    assert not rbac.can(bob, action, "beta")
    with pytest.raises(rbac.AccessDenied):
        rbac.check(bob, action, "beta")


def test_a_project_admin_is_no_global_admin() -> None:
    alice = Identity("alice", (Binding(ADMIN, "alpha"),))
    assert rbac.can(alice, "quota.set", "alpha") and rbac.can(alice, "project.delete", "alpha")
    assert not rbac.can(alice, "quota.set", "beta")
    for action in ("user.add", "role.bind", "token.create", "secret.set", "project.create"):
        assert not rbac.can(alice, action, "alpha") and not rbac.can(alice, action, None)


def test_bindings_add_up() -> None:
    bob = Identity("bob", (Binding(VIEWER, None), Binding(OPERATOR, "alpha")))
    assert rbac.can(bob, "machine.read", "beta")
    assert rbac.can(bob, "machine.delete", "alpha")
    assert not rbac.can(bob, "machine.delete", "beta")
    assert not rbac.can(bob, "audit.read", None)


def test_the_refusal_says_who_what_and_where() -> None:
    bob = Identity("bob", (Binding(OPERATOR, "alpha"),))
    with pytest.raises(rbac.AccessDenied) as denied:
        rbac.check(bob, "checkpoint.restore", "beta")
    assert isinstance(denied.value, AutovibeDenied)
    assert (
        str(denied.value)
        == "user 'bob' (operator in project alpha) may not checkpoint.restore in project beta"
    )
    assert denied.value.hint == "an admin can grant it: autovibe role bind bob operator --project beta"

    with pytest.raises(rbac.AccessDenied) as denied:
        rbac.check(Identity("bob", ()), "audit.verify", None)
    assert str(denied.value) == "user 'bob' (no roles) may not audit.verify (a global action)"
    assert denied.value.hint == "an admin can grant it: autovibe role bind bob auditor"

    with pytest.raises(rbac.AccessDenied) as denied:
        rbac.check(Identity("alice", (Binding(ADMIN, "alpha"), Binding(VIEWER, None))), "user.add", "alpha")
    assert str(denied.value) == (
        "user 'alice' (admin in project alpha, viewer globally) may not user.add in project alpha"
        " (it needs a global role)"
    )


@pytest.mark.parametrize("action", ["machine.destroy", "machine", "", "Machine.read", "machine.read "])
def test_an_unknown_action_raises_instead_of_deciding(action: str) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        rbac.can(LOCAL_ADMIN, action, "alpha")
    with pytest.raises(ValueError, match="unknown action"):
        rbac.check(Identity("bob", ()), action, None)


def test_an_unknown_role_in_a_binding_grants_nothing() -> None:
    assert not rbac.can(Identity("bob", (Binding("root", None),)), "machine.read", None)
