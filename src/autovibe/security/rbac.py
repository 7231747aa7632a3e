"""Who may do what, where: the role table and the check the gate runs first (pure: no I/O).

Four roles, each bound to a user globally or in one project (DESIGN §4):

- ``viewer`` reads everything but the audit log;
- ``operator`` is a viewer who also runs machines, checkpoints, retention, network profiles, limits and
  the resumption of interrupted operations; not quotas, projects, policies, schedules or identities;
- ``admin`` may do everything;
- ``auditor`` reads everything, the audit log included, and changes nothing.

A project-scoped binding counts only for targets in that project; a global binding counts everywhere.
An action on a target outside any project (``project=None``), and every action in :data:`GLOBAL_ONLY`
whatever its target, needs a global binding: an admin of project alpha cannot add users or create
projects. An action name missing from :data:`ACTIONS` raises ``ValueError``, so a typo in a service
fails loudly instead of quietly allowing (or denying) something.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from autovibe.errors import AutovibeDenied

if TYPE_CHECKING:
    from autovibe.security.identity import Identity

ROLES: Final = ("viewer", "operator", "admin", "auditor")

_ALL: Final = frozenset(ROLES)
_OPERATE: Final = frozenset({"operator", "admin"})
_ADMIN: Final = frozenset({"admin"})
_AUDIT: Final = frozenset({"admin", "auditor"})

# Reads: every role (the audit log is the one read a viewer or operator does not get).
_READS: Final = (
    "project.read", "machine.read", "checkpoint.read", "usage.read", "quota.read", "network.read",
    "ops.read", "policy.read", "cluster.read", "approval.read",
)  # fmt: skip
# Day-to-day work on machines and their checkpoints: operators and admins.
_OPERATIONS: Final = (
    "machine.create", "machine.start", "machine.stop", "machine.shutdown", "machine.reboot",
    "machine.delete", "machine.extend", "machine.resize",
    "checkpoint.create", "checkpoint.restore", "checkpoint.branch", "checkpoint.delete",
    "checkpoint.pin", "checkpoint.unpin",
    "retention.apply", "network.apply", "ops.resume", "limits.set",
    "ai.plan",  # running an assistant's plan; each of its actions is checked again on its own
)  # fmt: skip
# Configuration that shapes what others may do or spend, and identities and secrets: admins only.
_ADMINISTRATION: Final = (
    "project.create", "project.delete",
    "policy.set", "policy.delete", "policy.attach", "policy.detach", "schedule.set", "schedule.remove",
    "quota.set", "quota.unset", "quota.enforce", "network.refresh", "hub.tick",
    "user.add", "user.disable", "user.enable", "token.create", "token.revoke", "role.bind", "role.unbind",
    "secret.set", "secret.delete", "secret.rotate",
    "approval.approve", "approval.reject",
)  # fmt: skip
# The audit log, and the listings of who holds which access: auditors and admins.
_AUDITING: Final = ("audit.read", "audit.verify", "audit.export", "user.list", "token.list", "role.list")

ACTIONS: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(_READS, _ALL),
    **dict.fromkeys(_OPERATIONS, _OPERATE),
    **dict.fromkeys(_ADMINISTRATION, _ADMIN),
    **dict.fromkeys(_AUDITING, _AUDIT),
}
"""Every action a service may ask about, and the roles allowed to do it."""

GLOBAL_ONLY: Final = frozenset(
    {
        "user.add", "user.disable", "user.enable", "user.list",
        "token.create", "token.revoke", "token.list",
        "role.bind", "role.unbind", "role.list",
        "secret.set", "secret.delete", "secret.rotate",
        "project.create", "network.refresh", "quota.enforce", "hub.tick",
        "policy.set", "policy.delete",  # a named policy is shared by every project it is attached to
    }
)  # fmt: skip
"""Actions that only a global binding allows, whatever project the target is in."""


# For the hint naming the role to grant: the least powerful one first.
_LEAST_FIRST: Final = ("viewer", "auditor", "operator", "admin")


class AccessDenied(AutovibeDenied):
    """The identity's roles do not allow the action on that target (exit code 3, HTTP 403)."""


def roles_for(action: str) -> frozenset[str]:
    """The roles allowed to do ``action``; ``ValueError`` for a name not in :data:`ACTIONS`."""
    try:
        return ACTIONS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}: add it to autovibe.security.rbac.ACTIONS") from None


def can(identity: Identity, action: str, project: str | None) -> bool:
    """Whether ``identity`` may do ``action`` on a target in ``project`` (``None``: outside any)."""
    allowed = roles_for(action)
    needs_global = project is None or action in GLOBAL_ONLY
    return any(
        binding.role in allowed
        and (binding.project is None or (not needs_global and binding.project == project))
        for binding in identity.bindings
    )


def check(identity: Identity, action: str, project: str | None) -> None:
    """Return when :func:`can` allows; otherwise raise :class:`AccessDenied` naming who, what and where."""
    if can(identity, action, project):
        return
    where = f"in project {project}" if project is not None else "(a global action)"
    if project is not None and action in GLOBAL_ONLY:
        where = f"in project {project} (it needs a global role)"
    least = next(role for role in _LEAST_FIRST if role in ACTIONS[action])
    scope = f" --project {project}" if project is not None and action not in GLOBAL_ONLY else ""
    who = {"user": "user", "system": "system identity"}.get(identity.kind, "identity")
    raise AccessDenied(
        f"{who} '{identity.name}' ({describe_bindings(identity)}) may not {action} {where}",
        hint=f"an admin can grant it: autovibe role bind {identity.name} {least}{scope}",
    )


def describe_bindings(identity: Identity) -> str:
    """``operator in project alpha, viewer globally``, or ``no roles``."""
    parts = [
        f"{binding.role} " + (f"in project {binding.project}" if binding.project is not None else "globally")
        for binding in identity.bindings
    ]
    return ", ".join(parts) or "no roles"
