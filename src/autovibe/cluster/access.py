"""Set up autovibe's least-privilege access on PVE through the API (``autovibe pve role --apply``).

:func:`apply_access` creates or updates the custom roles of an :class:`AccessPlan`, the user, its
privilege-separated API token and the ACLs granting the roles to both, and changes only what differs,
so running it again is harmless. It needs credentials that may manage roles, users and ACLs; it checks
that first (``GET /access/permissions``) and changes nothing when they fall short.

The token secret exists only in the answer to the token's creation: it is returned once, in
:attr:`AccessApplied.token_secret`, which no repr shows and nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autovibe.cluster.privileges import (
    TOKEN_COMMENT,
    USER_COMMENT,
    AccessPlan,
    AclSpec,
    Need,
    Rule,
    admin_requirements,
    concrete_paths,
    unmet,
)
from autovibe.errors import AutovibeDenied
from autovibe.pve import PveClient


class AccessSetupDenied(AutovibeDenied):
    """The configured credentials may not manage PVE roles, users or ACLs (exit code 3)."""


@dataclass(frozen=True)
class AccessApplied:
    """What :func:`apply_access` did. ``token_secret`` is set only when the token was created now."""

    plan: AccessPlan
    changes: tuple[str, ...]
    notes: tuple[str, ...]
    token_secret: str | None = field(default=None, repr=False)

    @property
    def token_value(self) -> str | None:
        """``USER@REALM!TOKEN=SECRET``, the form ``pve_token`` / ``AUTOVIBE_PVE_TOKEN`` takes."""
        return f"{self.plan.token_authid}={self.token_secret}" if self.token_secret else None


_ADMIN_HINT = (
    "run it with an administrator's credentials (e.g. AUTOVIBE_PVE_USER=root@pam and AUTOVIBE_PVE_PASSWORD), "
    "or run the pveum commands `autovibe pve role --print` shows on a PVE node"
)


async def check_admin(*, pve: PveClient, plan: AccessPlan, rules: Mapping[str, Rule] | None = None) -> None:
    """Raise :class:`AccessSetupDenied` naming what the credentials lack to apply ``plan``."""
    found = admin_requirements(plan, rules)
    held: dict[str, set[str]] = {}
    for path in concrete_paths(found):
        answer = await pve.permissions(path=path)
        held[path] = set(answer.get(path, {}))
    missing = unmet(found, held)
    if missing:
        raise AccessSetupDenied(
            f"these credentials cannot set up autovibe's PVE access: {describe_missing(missing)}",
            hint=_ADMIN_HINT,
        )


def describe_missing(missing: Sequence[Need]) -> str:
    """``missing on /access: Sys.Modify; missing on /vms: Permissions.Modify``."""
    grouped: dict[str, list[str]] = {}
    for path, priv in missing:
        grouped.setdefault(path, []).append(priv)
    return "; ".join(f"missing on {path}: {', '.join(privs)}" for path, privs in grouped.items())


async def apply_access(*, pve: PveClient, plan: AccessPlan) -> AccessApplied:
    """Bring roles, user, token and ACLs to ``plan`` (see the module docstring)."""
    await check_admin(pve=pve, plan=plan)
    changes: list[str] = []
    notes: list[str] = []
    changes += await _sync_roles(pve, plan)
    user = await _ensure_user(pve, plan, changes, notes)
    secret = await _ensure_token(pve, plan, user, changes, notes)
    changes += await _sync_acls(pve, plan, notes)
    return AccessApplied(plan, tuple(changes), tuple(notes), secret)


def _privs(value: Any) -> set[str]:
    return {priv for priv in str(value or "").replace(";", ",").split(",") if priv.strip()}


async def _sync_roles(pve: PveClient, plan: AccessPlan) -> list[str]:
    existing = {str(row["roleid"]): _privs(row.get("privs")) for row in await pve.get("/access/roles")}
    changes = []
    for role in plan.roles:
        wanted = set(role.privileges)
        privs = ",".join(role.privileges)
        if role.roleid not in existing:
            await pve.post("/access/roles", roleid=role.roleid, privs=privs)
            changes.append(f"created role {role.roleid}: {', '.join(role.privileges)}")
        elif existing[role.roleid] != wanted:
            await pve.put(f"/access/roles/{role.roleid}", privs=privs)
            added, removed = wanted - existing[role.roleid], existing[role.roleid] - wanted
            diff = [*(f"+{p}" for p in sorted(added)), *(f"-{p}" for p in sorted(removed))]
            changes.append(f"updated role {role.roleid}: {' '.join(diff)}")
    return changes


async def _ensure_user(
    pve: PveClient, plan: AccessPlan, changes: list[str], notes: list[str]
) -> Mapping[str, Any]:
    rows = await pve.get("/access/users", full=1)
    found = next((row for row in rows if row.get("userid") == plan.userid), None)
    if found is None:
        await pve.post("/access/users", userid=plan.userid, comment=USER_COMMENT)
        changes.append(f"created user {plan.userid} (no password: it logs in with its API token only)")
        return {"userid": plan.userid, "tokens": []}
    if not int(found.get("enable", 1) or 0):
        notes.append(
            f"user {plan.userid} is disabled, and so are its tokens: "
            f"pveum user modify {plan.userid} --enable 1"
        )
    row: Mapping[str, Any] = found
    return row


async def _ensure_token(
    pve: PveClient, plan: AccessPlan, user: Mapping[str, Any], changes: list[str], notes: list[str]
) -> str | None:
    path = f"/access/users/{plan.userid}/token/{plan.tokenid}"
    token = next((t for t in user.get("tokens") or [] if t.get("tokenid") == plan.tokenid), None)
    if token is None:
        answer = await pve.post(path, privsep=1, comment=TOKEN_COMMENT)
        changes.append(f"created API token {plan.token_authid} (privilege separation on)")
        return str(answer["value"])
    if not int(token.get("privsep", 1) or 0):
        await pve.put(path, privsep=1)
        changes.append(f"turned privilege separation on for {plan.token_authid}")
    notes.append(
        f"API token {plan.token_authid} already exists; its secret was shown when it was created and "
        f"cannot be shown again (to get a new one: pveum user token remove {plan.userid} {plan.tokenid}, "
        "then apply again)"
    )
    return None


def _has(entries: Sequence[Mapping[str, Any]], acl: AclSpec, ugid: str) -> bool:
    return any(
        e.get("path") == acl.path
        and e.get("ugid") == ugid
        and e.get("roleid") == acl.roleid
        and bool(int(e.get("propagate", 1))) == acl.propagate
        for e in entries
    )


async def _sync_acls(pve: PveClient, plan: AccessPlan, notes: list[str]) -> list[str]:
    entries: list[dict[str, Any]] = await pve.get("/access/acl")
    changes = []
    for acl in plan.acls:
        user = None if _has(entries, acl, plan.userid) else plan.userid
        token = None if _has(entries, acl, plan.token_authid) else plan.token_authid
        if user is None and token is None:
            continue
        await pve.put(
            "/access/acl", path=acl.path, roles=acl.roleid, users=user, tokens=token, propagate=acl.propagate
        )
        whom = " and ".join(x for x in (user, token) if x)
        how = "" if acl.propagate else " (not propagated)"
        changes.append(f"granted {acl.roleid} on {acl.path}{how} to {whom}")
    planned = {(acl.path, acl.roleid) for acl in plan.acls}
    for e in entries:
        if (
            e.get("ugid") in (plan.userid, plan.token_authid)
            and (e.get("path"), e.get("roleid")) not in planned
        ):
            notes.append(
                f"{e.get('ugid')} also holds {e.get('roleid')} on {e.get('path')}, which autovibe does not "
                f"need: pveum acl delete {e.get('path')} --roles {e.get('roleid')} "
                f"--{'tokens' if e.get('type') == 'token' else 'users'} '{e.get('ugid')}'"
            )
    return changes
