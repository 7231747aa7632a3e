"""Roles: bind ``viewer``, ``operator``, ``admin`` or ``auditor`` to users, globally or in one project.

A project-scoped role counts only for that project's targets; a global one counts everywhere and is
the only kind that allows global actions (users, tokens, roles, creating projects). Listing needs a
global ``role.list`` (auditors and admins); binding and unbinding a global admin, through the security
gate as the caller (granting admin weighs more), audited.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from autovibe.api.deps import Caller, HubDep
from autovibe.api.routers.users import USER_NAME
from autovibe.machines.models import SLUG_RE
from autovibe.security import identity as identities
from autovibe.security.risk import Subject

router = APIRouter(prefix="/roles", tags=["roles"])

Role = Literal["viewer", "operator", "admin", "auditor"]
PROJECT_NAME = f"^{SLUG_RE.pattern}$"


class BindingOut(BaseModel):
    """``role`` held by ``user`` in ``project``, or globally when ``project`` is null."""

    user: str
    role: Role
    project: str | None


class BindingRequest(BaseModel):
    """A role for a user, in one project or (``project`` null or left out) globally."""

    model_config = ConfigDict(extra="forbid")

    user: Annotated[str, Field(min_length=1, max_length=64, pattern=USER_NAME)]
    role: Role
    project: Annotated[str | None, Field(min_length=1, max_length=64, pattern=PROJECT_NAME)] = None


def _out(read: identities.BindingRead) -> BindingOut:
    return BindingOut.model_validate(asdict(read))


@router.get("/bindings", response_model=list[BindingOut])
def list_bindings(
    hub: HubDep,
    identity: Caller,
    user: Annotated[str | None, Query(min_length=1, max_length=64, pattern=USER_NAME)] = None,
) -> list[BindingOut]:
    """Every role binding (or ``user``'s), by user, global ones first."""
    hub.base_deps.security.precheck(identity, "role.list", target="role bindings")
    return [_out(read) for read in identities.bindings_of(hub.db, user)]


@router.post("/bindings", status_code=201, response_model=BindingOut)
def bind(hub: HubDep, identity: Caller, body: BindingRequest) -> BindingOut:
    """Give ``user`` the ``role`` (binding it again changes nothing). 404 for an unknown user or
    project."""
    with hub.base_deps.security.guard_sync(
        identity,
        "role.bind",
        target=f"user {body.user}",
        subject=Subject("role.bind", details={"role": body.role}),
        params={"role": body.role, "project": body.project},
    ):
        return _out(identities.bind(hub.db, body.user, body.role, body.project))


@router.delete("/bindings", response_model=BindingOut)
def unbind(
    hub: HubDep,
    identity: Caller,
    user: Annotated[str, Query(min_length=1, max_length=64, pattern=USER_NAME)],
    role: Annotated[Role, Query()],
    project: Annotated[str | None, Query(min_length=1, max_length=64, pattern=PROJECT_NAME)] = None,
) -> BindingOut:
    """Take ``role`` away from ``user`` (in ``project``, or the global binding without it); 404 when
    the user does not hold that exact binding. The answer is the binding removed."""
    with hub.base_deps.security.guard_sync(
        identity,
        "role.unbind",
        target=f"user {user}",
        subject=Subject("role.unbind"),
        params={"role": role, "project": project},
    ):
        return _out(identities.unbind(hub.db, user, role, project))
