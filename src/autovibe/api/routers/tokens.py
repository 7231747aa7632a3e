"""Tokens: the API tokens users authenticate with (``Authorization: Bearer avt_...``).

A token's secret is in the answer to its creation, once: the store keeps only a keyed hash, and the
secret is never logged nor audited. Listing needs a global ``token.list`` (auditors and admins);
creating and revoking need a global admin, pass the security gate as the caller and are audited.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from autovibe import composition
from autovibe.api.deps import Caller, HubDep
from autovibe.api.errors import ApiError
from autovibe.api.routers.users import USER_NAME
from autovibe.machines.models import Ttl
from autovibe.security import identity as identities
from autovibe.security.risk import Subject

router = APIRouter(prefix="/tokens", tags=["tokens"])

TokenId = Annotated[str, Path(min_length=12, max_length=12, pattern=r"^[0-9a-f]{12}$")]


class TokenOut(BaseModel):
    """A token as listings show it: never its secret (not stored) nor its hash."""

    token_id: str
    user: str
    description: str
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreate(BaseModel):
    """A token for ``user``; ``ttl`` its lifetime (``30d``, ``12h``), none for no expiry."""

    model_config = ConfigDict(extra="forbid")

    user: Annotated[str, Field(min_length=1, max_length=64, pattern=USER_NAME)]
    description: Annotated[str, Field(max_length=200)] = ""
    ttl: Ttl | None = None


class TokenCreated(BaseModel):
    """The new token, and its full string in ``secret``: the only time it is shown."""

    token: TokenOut
    secret: str


def _out(read: identities.TokenRead) -> TokenOut:
    return TokenOut.model_validate({**asdict(read), "state": read.state(datetime.now(UTC))})


@router.get("", response_model=list[TokenOut])
def list_tokens(
    hub: HubDep,
    identity: Caller,
    user: Annotated[str | None, Query(min_length=1, max_length=64, pattern=USER_NAME)] = None,
) -> list[TokenOut]:
    """Every token (or ``user``'s), oldest first: owner, state, expiry, last use; never a secret."""
    hub.base_deps.security.precheck(identity, "token.list", target="tokens")
    return [_out(read) for read in identities.list_tokens(hub.db, user)]


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(hub: HubDep, identity: Caller, body: TokenCreate) -> TokenCreated:
    """Create a token for an enabled user. The answer holds the secret, the only time it exists
    outside the caller's hands: store it now. 404 for an unknown user, 409 for a disabled one."""
    params = {"description": body.description, "ttl": str(body.ttl) if body.ttl else None}
    with hub.base_deps.security.guard_sync(
        identity,
        "token.create",
        target=f"token for user {body.user}",
        subject=Subject("token.create"),
        params=params,
    ):
        try:
            read, secret = identities.create_token(
                hub.db,
                body.user,
                description=body.description,
                ttl=body.ttl,
                key=composition.token_key(hub.settings),
            )
        except identities.UserDisabled as exc:  # not the caller's 401: the target user is disabled
            raise ApiError("conflict", exc.message, hint=exc.hint) from None
    return TokenCreated(token=_out(read), secret=secret)


@router.delete("/{token_id}", response_model=TokenOut)
def revoke_token(hub: HubDep, identity: Caller, token_id: TokenId) -> TokenOut:
    """Revoke a token for good: it stops authenticating at once (revoking it again changes nothing)."""
    with hub.base_deps.security.guard_sync(
        identity, "token.revoke", target=f"token {token_id}", subject=Subject("token.revoke")
    ):
        return _out(identities.revoke_token(hub.db, token_id))
