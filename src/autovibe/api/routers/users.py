"""Users: the identities that act through API tokens with the roles bound to them.

Listing needs a global ``user.list`` (auditors and admins); adding, disabling and enabling need a
global admin. Every change passes the security gate as the caller and is audited.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from autovibe.api.deps import Caller, HubDep
from autovibe.errors import AutovibeConflict
from autovibe.security import identity as identities
from autovibe.security.identity import USER_NAME_RE
from autovibe.security.risk import Subject

router = APIRouter(prefix="/users", tags=["users"])

USER_NAME = f"^{USER_NAME_RE.pattern}$"
UserName = Annotated[str, Path(min_length=1, max_length=64, pattern=USER_NAME)]


class UserOut(BaseModel):
    name: str
    display_name: str
    disabled: bool
    created_at: datetime


class UserCreate(BaseModel):
    """A new user: enabled, with no roles until one is bound (``POST /roles/bindings``)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=USER_NAME, examples=["alice"])]
    display_name: Annotated[str, Field(max_length=128, examples=["Alice Smith"])] = ""


def _out(read: identities.UserRead) -> UserOut:
    return UserOut.model_validate(asdict(read))


@router.get("", response_model=list[UserOut])
def list_users(hub: HubDep, identity: Caller) -> list[UserOut]:
    """Every user, enabled or not, by name."""
    hub.base_deps.security.precheck(identity, "user.list", target="users")
    return [_out(user) for user in identities.list_users(hub.db)]


@router.post("", status_code=201, response_model=UserOut)
def add_user(hub: HubDep, identity: Caller, body: UserCreate) -> UserOut:
    """Add a user (409 when the name is taken; reserved names are refused). Needs a global admin."""
    identities.check_name(body.name)
    with hub.base_deps.security.guard_sync(
        identity, "user.add", target=f"user {body.name}", subject=Subject("user.add")
    ):
        return _out(identities.add_user(hub.db, body.name, body.display_name))


@router.post("/{name}/disable", response_model=UserOut)
def disable_user(hub: HubDep, identity: Caller, name: UserName) -> UserOut:
    """Disable a user: its tokens stop authenticating (401) until it is enabled again. Not yourself:
    that would lock the caller out mid-session (409)."""
    if name == identity.name:
        raise AutovibeConflict(
            f"user '{name}' may not disable itself", hint="another admin can disable this user"
        )
    with hub.base_deps.security.guard_sync(
        identity, "user.disable", target=f"user {name}", subject=Subject("user.disable")
    ):
        return _out(identities.disable_user(hub.db, name))


@router.post("/{name}/enable", response_model=UserOut)
def enable_user(hub: HubDep, identity: Caller, name: UserName) -> UserOut:
    """Enable a disabled user again: its unexpired, unrevoked tokens work again."""
    with hub.base_deps.security.guard_sync(
        identity, "user.enable", target=f"user {name}", subject=Subject("user.enable")
    ):
        return _out(identities.enable_user(hub.db, name))
