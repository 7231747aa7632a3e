"""Identities: users, their API tokens and role bindings, and the :class:`Identity` the gate checks.

Local CLI use acts as :data:`LOCAL_ADMIN` (a global admin with no row in the store); the API requires a
token, which :func:`authenticate` turns into the identity of its (enabled) user.

**Tokens.** ``avt_<token_id>_<secret>``: ``token_id`` is 12 public hex characters that name the token
(listings, revocation, audit); ``secret`` is 32 random bytes, URL-safe base64. The full string is shown
once, when created. The store keeps only ``HMAC-SHA256(server_key, token_id + ":" + secret)``:

- a secret of 256 random bits cannot be guessed, so a slow, memory-hard KDF (scrypt, argon2), which
  exists to protect low-entropy passwords against guessing, would add nothing but latency to every API
  call;
- keying the hash with a server-side key (the ``token.key`` file, outside the database) means a stolen
  database alone cannot even check a guess, nor tell which token is which user's beyond the public ids;
- a token is looked up by its ``token_id`` and its hash compared with :func:`hmac.compare_digest`; an
  unknown id still costs one HMAC, and every refusal (malformed, unknown, wrong secret, expired, revoked,
  disabled user) raises the same :class:`AuthenticationFailed`, so a caller learns nothing from it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from autovibe.store.db import Database

from autovibe.errors import AutovibeConflict, AutovibeDenied, AutovibeInvalid, AutovibeNotFound
from autovibe.security.rbac import ROLES
from autovibe.store.errors import StoreConflict
from autovibe.store.repositories import project_by_name
from autovibe.store.tables import ApiToken, Project, RoleBinding, User

TOKEN_PREFIX: Final = "avt_"
TOKEN_KEY_FILE: Final = "token.key"
KEY_BYTES: Final = 32
RESERVED_NAMES: Final = frozenset({"local-admin", "system", "hub"})
USER_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""What a user name may be (the API's routes and the remote CLI check the same)."""
_TOKEN_RE = re.compile(r"avt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DUMMY_HASH = "0" * 64
LAST_USED_RESOLUTION = timedelta(minutes=1)


# ---- the identity the gate checks ----------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """A role, held globally (``project`` None) or in one project."""

    role: str
    project: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who acts: a name for the audit log, the roles held, and what kind of identity it is."""

    name: str
    bindings: tuple[Binding, ...]
    kind: Literal["local-admin", "user", "system"] = "user"


LOCAL_ADMIN: Final = Identity("local-admin", (Binding("admin", None),), "local-admin")
"""Local CLI use (``composition.LOCAL_ACTOR``): a global admin."""


def system_identity(name: str, bindings: tuple[Binding, ...] = (Binding("admin", None),)) -> Identity:
    """An identity for autovibe itself (the hub's scheduler): held to its roles, never to approvals."""
    return Identity(name, bindings, "system")


# ---- errors --------------------------------------------------------------------------------------


class InvalidIdentityRequest(AutovibeInvalid, ValueError):
    """A malformed name, an unknown role, a TTL that is not positive."""


class UserExists(AutovibeConflict):
    """A user of that name already exists."""


class UserNotFound(AutovibeNotFound):
    """No user of that name."""


class UserDisabled(AutovibeDenied):
    """The user is disabled: no identity, no new tokens."""


class TokenNotFound(AutovibeNotFound):
    """No token with that id."""


class BindingNotFound(AutovibeNotFound):
    """The user does not hold that role there (or the project does not exist)."""


class AuthenticationFailed(AutovibeDenied):
    """The token is not accepted; deliberately one message whatever the reason."""


class KeyFileUnsafe(AutovibeDenied):
    """The token key file is readable by others, or not a key autovibe wrote."""


AUTHENTICATION_FAILED: Final = "authentication failed: the API token is not valid"


# ---- what the functions return (``dataclasses.asdict`` gives their JSON form) ---------------------


@dataclass(frozen=True)
class UserRead:
    name: str
    display_name: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenRead:
    """A token as listings show it: never its secret (which is not stored) nor its hash."""

    token_id: str
    user: str
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class BindingRead:
    user: str
    role: str
    project: str | None


# ---- users ---------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A user name: a lowercase slug (letters, digits, ``_``, ``-``; up to 64), not a reserved name."""
    if not USER_NAME_RE.fullmatch(name):
        raise InvalidIdentityRequest(
            f"user name {name!r} is not a lowercase slug (letters, digits, '_' and '-'; up to 64)"
        )
    if name in RESERVED_NAMES:
        raise InvalidIdentityRequest(f"user name {name!r} is reserved for autovibe's own identities")
    return name


def add_user(db: Database, name: str, display_name: str = "") -> UserRead:
    """Store a new, enabled user with no roles. Raises :class:`UserExists`."""
    check_name(name)
    if len(display_name) > 128:
        raise InvalidIdentityRequest("display name: at most 128 characters")
    taken = UserExists(f"a user named '{name}' already exists", hint="see them with `autovibe user list`")
    try:
        with db.session() as session:
            if _find_user(session, name) is not None:
                raise taken
            row = User(name=name, display_name=display_name, disabled=False, created_at=datetime.now(UTC))
            session.add(row)
            session.flush()
            return _user_read(row)
    except StoreConflict as exc:
        raise taken from exc


def list_users(db: Database) -> list[UserRead]:
    with db.session() as session:
        return [_user_read(row) for row in session.scalars(select(User).order_by(User.name))]


def disable_user(db: Database, name: str) -> UserRead:
    """Disable ``name``: its tokens stop working and it has no identity until enabled again."""
    return _set_disabled(db, name, disabled=True)


def enable_user(db: Database, name: str) -> UserRead:
    """Enable ``name`` again: its unexpired, unrevoked tokens work again."""
    return _set_disabled(db, name, disabled=False)


def _set_disabled(db: Database, name: str, *, disabled: bool) -> UserRead:
    with db.session() as session:
        row = _user_row(session, name)
        row.disabled = disabled
        return _user_read(row)


# ---- tokens --------------------------------------------------------------------------------------


def create_token(
    db: Database,
    user: str,
    *,
    description: str = "",
    ttl: timedelta | None = None,
    key: bytes,
    now: datetime | None = None,
) -> tuple[TokenRead, str]:
    """A new token for ``user``: its listing, and the full token string (the only time it exists)."""
    _check_key(key)
    if ttl is not None and ttl <= timedelta(0):
        raise InvalidIdentityRequest("ttl: must be longer than zero (leave it out for no expiry)")
    created = now or datetime.now(UTC)
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(KEY_BYTES)
    with db.session() as session:
        owner = _user_row(session, user)
        if owner.disabled:
            raise UserDisabled(
                f"user '{user}' is disabled", hint=f"enable it first: autovibe user enable {user}"
            )
        row = ApiToken(
            token_id=token_id,
            user_id=owner.id,
            secret_hash=_digest(key, token_id, secret),
            description=description,
            created_at=created,
            expires_at=created + ttl if ttl is not None else None,
        )
        session.add(row)
        session.flush()
        return _token_read(row, owner.name), f"{TOKEN_PREFIX}{token_id}_{secret}"


def authenticate(db: Database, token_string: str, *, key: bytes, now: datetime) -> Identity:
    """The identity a token stands for; records its use. Raises :class:`AuthenticationFailed`."""
    _check_key(key)
    match = _TOKEN_RE.fullmatch(token_string.strip())
    token_id, secret = match.groups() if match else ("", "")
    with db.session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.token_id == token_id)).one_or_none()
        expected = row.secret_hash if row is not None else _DUMMY_HASH
        genuine = hmac.compare_digest(expected, _digest(key, token_id, secret))
        if row is None or not genuine or not match:
            raise AuthenticationFailed(AUTHENTICATION_FAILED)
        owner = session.get(User, row.user_id)
        live = row.revoked_at is None and (row.expires_at is None or now < row.expires_at)
        if owner is None or owner.disabled or not live:
            raise AuthenticationFailed(AUTHENTICATION_FAILED)
        # Recorded to the minute: a write on every API call would serialise the hub's reads on it.
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            row.last_used_at = now
        return Identity(owner.name, _bindings(session, owner), "user")


def list_tokens(db: Database, user: str | None = None) -> list[TokenRead]:
    """Every token (of ``user`` when given), oldest first, without secrets."""
    with db.session() as session:
        query = select(ApiToken, User.name).join(User, ApiToken.user_id == User.id)
        if user is not None:
            query = query.where(User.id == _user_row(session, user).id)
        rows = session.execute(query.order_by(ApiToken.created_at, ApiToken.id))
        return [_token_read(token, name) for token, name in rows]


def revoke_token(db: Database, token_id: str, *, now: datetime | None = None) -> TokenRead:
    """Revoke a token for good (revoking it again changes nothing). Raises :class:`TokenNotFound`."""
    with db.session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.token_id == token_id)).one_or_none()
        if row is None:
            raise TokenNotFound(f"no token '{token_id}'", hint="see them with `autovibe token list`")
        if row.revoked_at is None:
            row.revoked_at = now or datetime.now(UTC)
        owner = session.get(User, row.user_id)
        return _token_read(row, owner.name if owner else "?")


def server_key_from(path: Path) -> bytes:
    """The token key in the file ``path``: 32 random bytes, created (mode 0600, atomically) when missing.

    Refuses (:class:`KeyFileUnsafe`) a file that group or others may read or write, or that does not
    hold exactly 32 bytes: fix it (``chmod 600``) or move it away to have a new key made, which
    invalidates every token issued so far.
    """
    if not path.exists():
        _create_key(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            raise KeyFileUnsafe(
                f"token key file {path} is open to others (mode {mode:04o})", hint=f"chmod 600 {path}"
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise KeyFileUnsafe(
            f"token key file {path} does not hold a {KEY_BYTES}-byte key",
            hint="move it away to have a new key made (every token issued so far stops working)",
        )
    return key


def _create_key(path: Path) -> None:
    # Written in full to a private temporary file, then linked into place: a process racing to create
    # the key either wins or reads the winner's complete file, never a half-written one.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _check_key(key: bytes) -> None:
    if len(key) < KEY_BYTES:
        raise ValueError(f"the token key must be at least {KEY_BYTES} bytes")


def _digest(key: bytes, token_id: str, secret: str) -> str:
    return hmac.new(key, f"{token_id}:{secret}".encode(), hashlib.sha256).hexdigest()


# ---- roles ---------------------------------------------------------------------------------------


def bind(db: Database, user: str, role: str, project: str | None = None) -> BindingRead:
    """Give ``user`` the ``role`` in ``project`` (globally when None); binding it again changes nothing."""
    _check_role(role)
    with db.session() as session:
        owner = _user_row(session, user)
        project_id = _project_id(session, project)
        if _binding_row(session, owner.id, role, project_id) is None:
            session.add(RoleBinding(user_id=owner.id, role=role, project_id=project_id))
        return BindingRead(owner.name, role, project)


def unbind(db: Database, user: str, role: str, project: str | None = None) -> BindingRead:
    """Take that exact binding away. Raises :class:`BindingNotFound` when the user does not hold it."""
    _check_role(role)
    where = f"in project {project}" if project is not None else "globally"
    with db.session() as session:
        owner = _user_row(session, user)
        found = project_by_name(session, project) if project is not None else None
        row = None
        if project is None or found is not None:
            row = _binding_row(session, owner.id, role, found.id if found else None)
        if row is None:
            raise BindingNotFound(
                f"user '{user}' is not {role} {where}",
                hint=f"see its roles: autovibe role list --user {user}",
            )
        session.delete(row)
        return BindingRead(owner.name, role, project)


def bindings_of(db: Database, user: str | None = None) -> list[BindingRead]:
    """The bindings of ``user`` (everyone's when None), by user, global ones first."""
    with db.session() as session:
        query = (
            select(User.name, RoleBinding.role, Project.name)
            .select_from(RoleBinding)
            .join(User, RoleBinding.user_id == User.id)
            .outerjoin(Project, RoleBinding.project_id == Project.id)
        )
        if user is not None:
            query = query.where(User.id == _user_row(session, user).id)
        rows = [BindingRead(name, role, project) for name, role, project in session.execute(query)]
    return sorted(rows, key=lambda b: (b.user, b.project is not None, b.project or "", ROLES.index(b.role)))


def identity_of(db: Database, user: str) -> Identity:
    """The identity of an enabled user, with its roles. Raises :class:`UserDisabled`."""
    with db.session() as session:
        owner = _user_row(session, user)
        if owner.disabled:
            raise UserDisabled(f"user '{user}' is disabled", hint=f"autovibe user enable {user}")
        return Identity(owner.name, _bindings(session, owner), "user")


def _bindings(session: Session, owner: User) -> tuple[Binding, ...]:
    rows = session.execute(
        select(RoleBinding.role, Project.name)
        .outerjoin(Project, RoleBinding.project_id == Project.id)
        .where(RoleBinding.user_id == owner.id)
    )
    return tuple(
        sorted((Binding(role, project) for role, project in rows), key=lambda b: (b.project or "", b.role))
    )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidIdentityRequest(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")


def _project_id(session: Session, project: str | None) -> int | None:
    if project is None:
        return None
    row = project_by_name(session, project)
    if row is None:
        raise BindingNotFound(f"no project '{project}'", hint=f"create it: autovibe project create {project}")
    return row.id


def _binding_row(session: Session, user_id: int, role: str, project_id: int | None) -> RoleBinding | None:
    # Not left to the unique constraint: SQL counts NULL project ids as distinct.
    return session.scalars(
        select(RoleBinding).where(
            RoleBinding.user_id == user_id,
            RoleBinding.role == role,
            RoleBinding.project_id.is_(None) if project_id is None else RoleBinding.project_id == project_id,
        )
    ).first()


# ---- rows ----------------------------------------------------------------------------------------


def _find_user(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()


def _user_row(session: Session, name: str) -> User:
    row = _find_user(session, name)
    if row is None:
        raise UserNotFound(f"no user '{name}'", hint=f"add it: autovibe user add {name}")
    return row


def _user_read(row: User) -> UserRead:
    return UserRead(row.name, row.display_name, row.disabled, row.created_at)


def _token_read(row: ApiToken, user: str) -> TokenRead:
    return TokenRead(
        row.token_id, user, row.description, row.created_at, row.expires_at, row.revoked_at, row.last_used_at
    )
