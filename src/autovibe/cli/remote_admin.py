"""The remote halves of the audit, approval, user, token and role commands: see :mod:`autovibe.cli.remote`.

Each function asks the hub and rebuilds what the local code gets from the store (``AuditRecord``,
``VerifyResult``, ``Approval`` rows, ``UserRead``, ``TokenRead``, ``BindingRead``), so every command
keeps one rendering path. A name or id that cannot exist (the hub's routes constrain them) is refused
here with the same error the local code raises for an unknown one, instead of the hub's 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from autovibe.cli.remote import connect, segment

if TYPE_CHECKING:
    from datetime import timedelta

    from autovibe.security.audit import AuditRecord, VerifyResult
    from autovibe.security.identity import BindingRead, TokenRead, UserRead
    from autovibe.settings import Settings
    from autovibe.store.tables import Approval

COMMANDS: frozenset[str] = frozenset(
    {
        "audit list", "audit show", "audit export", "audit verify",
        "approval list", "approval approve", "approval reject", "approve",
        "user add", "user list", "user disable", "user enable",
        "token create", "token list", "token revoke",
        "role bind", "role unbind", "role list",
    }
)  # fmt: skip
"""Command paths (``"checkpoint list"``) that work with ``--hub``."""

# What the hub's routes accept (``api/routers/tokens.py``, ``approvals.py``); names: the domain's patterns.
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
_APPROVAL_ID = re.compile(r"[0-9a-f-]{1,36}")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)).astimezone(UTC) if value else None


def _when(value: Any) -> datetime:
    moment = _time(value)
    assert moment is not None, "the hub answered without a time"
    return moment


# ---- audit -----------------------------------------------------------------------------------------
def audit_entries(
    settings: Settings,
    *,
    since: datetime | None,
    actor: str | None,
    action: str | None,
    project: str | None,
    limit: int,
) -> list[AuditRecord]:
    from autovibe.security.audit import AuditRecord

    after = since.astimezone(UTC).isoformat() if since is not None else None
    with connect(settings) as hub:
        items = hub.get("/audit", limit=limit, after=after, actor=actor, action=action, project=project)
    return [AuditRecord.model_validate(item) for item in items]


def audit_entry(settings: Settings, entry_id: int) -> AuditRecord:
    from autovibe.security.audit import AuditEntryNotFound, AuditRecord

    if entry_id > 2**62:  # beyond what the hub's route takes, and what any log holds
        raise AuditEntryNotFound(f"no audit entry {entry_id}", hint="list them: autovibe audit list")
    with connect(settings) as hub:
        return AuditRecord.model_validate(hub.get(f"/audit/{entry_id}"))


def audit_export(settings: Settings) -> str:
    """The whole log as the hub exports it: JSON Lines, oldest first (the local export's exact text)."""
    with connect(settings) as hub:
        return hub.request("GET", "/audit/export").text


def audit_verify(settings: Settings, anchor: tuple[int, str] | None) -> VerifyResult:
    from autovibe.security.audit import VerifyResult

    expected = f"{anchor[0]}:{anchor[1]}" if anchor is not None else None
    with connect(settings) as hub:
        return VerifyResult.model_validate(hub.get("/audit/verify", anchor=expected))


# ---- approvals -------------------------------------------------------------------------------------
def _approval(data: dict[str, Any]) -> Approval:
    """An approval request as the hub answers it, as the store's row the local code renders."""
    from autovibe.store.tables import Approval

    return Approval(
        id=str(data["id"]),
        action=str(data["action"]),
        target=str(data["target"]),
        project=data.get("project"),
        params={"params": dict(data.get("params") or {})},
        risk=int(data["risk"]),
        reasons={"reasons": [str(reason) for reason in data.get("reasons") or ()]},
        requested_by=str(data["requested_by"]),
        requested_at=_when(data["requested_at"]),
        status=str(data["status"]),
        decided_by=data.get("decided_by"),
        decided_at=_time(data.get("decided_at")),
    )


def pending_approvals(settings: Settings) -> list[Approval]:
    """The pending requests the caller may see (its own, and those of projects it may read)."""
    with connect(settings) as hub:
        return [_approval(item) for item in hub.get("/approvals")]


def decide_approval(settings: Settings, approval_id: str, *, approve: bool) -> Approval:
    from autovibe.security.gate import ApprovalNotFound

    if not _APPROVAL_ID.fullmatch(approval_id):
        raise ApprovalNotFound(f"no approval request '{approval_id}'")
    verb = "approve" if approve else "reject"
    with connect(settings) as hub:
        return _approval(hub.post(f"/approvals/{segment(approval_id)}/{verb}"))


# ---- users -----------------------------------------------------------------------------------------
def _user(data: dict[str, Any]) -> UserRead:
    from autovibe.security.identity import UserRead

    return UserRead(
        str(data["name"]), str(data["display_name"]), bool(data["disabled"]), _when(data["created_at"])
    )


def _known_user(name: str) -> str:
    """``name`` when it could name a user; else the local code's answer for an unknown user."""
    from autovibe.security.identity import USER_NAME_RE, UserNotFound

    if not USER_NAME_RE.fullmatch(name):
        raise UserNotFound(f"no user '{name}'", hint=f"add it: autovibe user add {name}")
    return name


def add_user(settings: Settings, name: str, display_name: str) -> UserRead:
    """Add the user (its name already checked with ``identity.check_name``, as locally)."""
    from autovibe.security.identity import InvalidIdentityRequest

    if len(display_name) > 128:
        raise InvalidIdentityRequest("display name: at most 128 characters")
    with connect(settings) as hub:
        return _user(hub.post("/users", {"name": name, "display_name": display_name}))


def list_users(settings: Settings) -> list[UserRead]:
    with connect(settings) as hub:
        return [_user(item) for item in hub.get("/users")]


def set_user_disabled(settings: Settings, name: str, *, disabled: bool) -> UserRead:
    verb = "disable" if disabled else "enable"
    with connect(settings) as hub:
        return _user(hub.post(f"/users/{segment(_known_user(name))}/{verb}"))


# ---- tokens ----------------------------------------------------------------------------------------
def _token(data: dict[str, Any]) -> TokenRead:
    from autovibe.security.identity import TokenRead

    return TokenRead(
        token_id=str(data["token_id"]),
        user=str(data["user"]),
        description=str(data["description"]),
        created_at=_when(data["created_at"]),
        expires_at=_time(data.get("expires_at")),
        revoked_at=_time(data.get("revoked_at")),
        last_used_at=_time(data.get("last_used_at")),
    )


def create_token(
    settings: Settings, user: str, *, description: str, ttl: timedelta | None
) -> tuple[TokenRead, str]:
    """A new token for ``user``: its listing and its secret (which the caller prints once, never logs)."""
    body: dict[str, Any] = {"user": _known_user(user), "description": description}
    if ttl is not None:
        body["ttl"] = f"{int(ttl.total_seconds())}s"
    with connect(settings) as hub:
        created = hub.post("/tokens", body)
    return _token(created["token"]), str(created["secret"])


def list_tokens(settings: Settings, user: str | None) -> list[TokenRead]:
    with connect(settings) as hub:
        items = hub.get("/tokens", user=_known_user(user) if user is not None else None)
    return [_token(item) for item in items]


def revoke_token(settings: Settings, token_id: str) -> TokenRead:
    from autovibe.security.identity import TokenNotFound

    if not _TOKEN_ID.fullmatch(token_id):
        raise TokenNotFound(f"no token '{token_id}'", hint="see them with `autovibe token list`")
    with connect(settings) as hub:
        return _token(hub.delete(f"/tokens/{token_id}"))


# ---- roles -----------------------------------------------------------------------------------------
def _binding(data: dict[str, Any]) -> BindingRead:
    from autovibe.security.identity import BindingRead

    project = data.get("project")
    return BindingRead(str(data["user"]), str(data["role"]), str(project) if project is not None else None)


def _check_role(role: str) -> None:
    from autovibe.security.identity import InvalidIdentityRequest
    from autovibe.security.rbac import ROLES

    if role not in ROLES:
        raise InvalidIdentityRequest(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")


def bind_role(settings: Settings, user: str, role: str, project: str | None) -> BindingRead:
    from autovibe.machines.models import SLUG_RE
    from autovibe.security.identity import BindingNotFound

    _check_role(role)
    _known_user(user)
    if project is not None and not SLUG_RE.fullmatch(project):
        raise BindingNotFound(f"no project '{project}'", hint=f"create it: autovibe project create {project}")
    with connect(settings) as hub:
        return _binding(hub.post("/roles/bindings", {"user": user, "role": role, "project": project}))


def unbind_role(settings: Settings, user: str, role: str, project: str | None) -> BindingRead:
    from autovibe.machines.models import SLUG_RE
    from autovibe.security.identity import BindingNotFound

    _check_role(role)
    _known_user(user)
    if project is not None and not SLUG_RE.fullmatch(project):
        raise BindingNotFound(
            f"user '{user}' is not {role} in project {project}",
            hint=f"see its roles: autovibe role list --user {user}",
        )
    with connect(settings) as hub:
        found = hub.delete("/roles/bindings", user=user, role=role, project=project)
    return _binding(found)


def role_bindings(settings: Settings, user: str | None) -> list[BindingRead]:
    with connect(settings) as hub:
        items = hub.get("/roles/bindings", user=_known_user(user) if user is not None else None)
    return [_binding(item) for item in items]
