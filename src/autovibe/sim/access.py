"""Users, API tokens, ACLs, tickets and request authentication of the simulated cluster.

Follows shared/pve-api/SEMANTICS.md §2. Tickets look exactly like PVE's,
``PVE:<userid>:<8 HEX issue time>::<base64 signature>``, but are signed with an HMAC-SHA256 over
``PVE:<userid>:<HEX>`` keyed by ``signing_key`` instead of PVE's RSA key: clients never verify the
signature, they only send the ticket back. Passwords and token secrets are kept only as scrypt hashes.

Tokens created through ``add_token`` (the CLI, ``apply_config``) default to ``privsep=False``: they carry
their user's full rights, which is what a flag like ``--token root@pam!ci=...`` means. Tokens created
through the API (``POST /access/users/{userid}/token/{tokenid}``) default to ``privsep=True``, as on PVE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from autovibe.sim.errors import SimApiError, SimAuthError
from autovibe.sim.privileges import (
    PRIVILEGES,
    ROLES,
    ROOT_USERID,
    capabilities,
    has_privileges,
    normalize_path,
)
from autovibe.sim.registry import Identity

# AccessControl.pm: $ticket_lifetime = 2 h, $auth_graceperiod = 5 min (also allowed clock skew ahead).
TICKET_LIFETIME = 2 * 3600
AUTH_GRACE = 5 * 60

USERID_RE = re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_TOKEN_HEADER_RE = re.compile(r"^\s*PVEAPIToken[=\s]\s*(\S.*?)\s*$")
_COOKIE_IN_AUTH_RE = re.compile(r"(?:^|\s)PVEAuthCookie=([^;]*)")

# ~10 ms per hash: still costlier than PVE's own shadow.cfg (sha256-crypt, 5000 rounds), and PVE keeps
# token secrets in plain text. The parameters are stored in each record, so they can be raised later.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**12, 8, 1


def hash_secret(secret: str) -> str:
    """A salted scrypt hash, ``scrypt$N$r$p$<salt b64>$<hash b64>``, safe to persist."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, record: str) -> bool:
    """Whether ``secret`` matches a ``hash_secret`` record (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = record.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class Token:
    """An API token of a user. ``expire`` is epoch seconds, 0 = never."""

    secret_hash: str
    privsep: bool = True
    expire: int = 0
    comment: str | None = None


@dataclass
class User:
    """``password_hash`` None means no password login (tickets only via root@pam, tokens still work)."""

    userid: str
    password_hash: str | None
    enable: bool = True
    expire: int = 0
    comment: str | None = None
    tokens: dict[str, Token] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        """Enabled and not past its expiry (AccessControl.pm check_user_enabled)."""
        return self.enable and not (self.expire and self.expire < now)


@dataclass(frozen=True)
class AclEntry:
    """One ACL line: ``ugid`` is a userid or a full token id ``user@realm!name``."""

    path: str
    ugid: str
    roleid: str
    propagate: bool = True

    @property
    def type(self) -> str:
        return "token" if "!" in self.ugid else "user"


@dataclass
class AccessState:
    """The ``user.cfg`` of the simulated cluster. Build with ``AccessState.new()``.

    >>> access = AccessState.new(root_password="secret")
    >>> secret = access.add_token("root@pam", "ci")          # privsep=False: root's full rights
    >>> access.apply_config({"users": [{"userid": "alice@pve", "password": "pw",
    ...                                 "roles": [["/vms/100", "PVEVMUser"]]}]})
    """

    users: dict[str, User]
    acls: list[AclEntry]
    signing_key: bytes
    # Custom roles (``POST /access/roles``), next to the built-in ``ROLES``: role id -> privileges.
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    # secret-record -> HMAC of the last secret that matched it, so a token costs one scrypt per process.
    _verified: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def new(cls, *, root_password: str | None = None) -> AccessState:
        """root@pam with ``root_password`` (random when None), a fresh signing key, no ACLs."""
        state = cls(users={}, acls=[], signing_key=secrets.token_bytes(32))
        state.users[ROOT_USERID] = User(ROOT_USERID, hash_secret(root_password or secrets.token_urlsafe(24)))
        return state

    # ---- users, tokens, ACLs --------------------------------------------------------------------
    def add_user(
        self,
        userid: str,
        password: str | None,
        *,
        roles: Iterable[tuple[str, str]] = (("/", "Administrator"),),
        enable: bool = True,
        expire: int = 0,
        comment: str | None = None,
    ) -> User:
        """Create a user and grant it ``roles`` as ``(path, roleid)`` ACLs (propagating).

        Raises ValueError for a malformed or existing userid or an unknown role.
        """
        if not USERID_RE.match(userid):
            raise ValueError(f"invalid userid '{userid}' (expected name@realm)")
        if userid in self.users:
            raise ValueError(f"user '{userid}' already exists")
        user = User(userid, hash_secret(password) if password is not None else None, enable, expire, comment)
        self.users[userid] = user
        for path, roleid in roles:
            self.set_acl(path, userid, roleid)
        return user

    def set_password(self, userid: str, password: str) -> None:
        self._user(userid).password_hash = hash_secret(password)

    def add_token(
        self,
        userid: str,
        name: str,
        secret: str | None = None,
        *,
        privsep: bool = False,
        expire: int | None = None,
        comment: str | None = None,
    ) -> str:
        """Create (or replace) token ``userid!name`` and return its secret (a new UUID when None).

        ``privsep`` defaults to False here (full user rights, as a CLI flag means); the API's default
        is True. ``expire`` defaults to the user's own expiry, as PVE does.
        """
        user = self._user(userid)
        if not TOKEN_NAME_RE.match(name):
            raise ValueError(f"invalid token name '{name}'")
        secret = secret if secret is not None else str(uuid.uuid4())
        user.tokens[name] = Token(
            hash_secret(secret), privsep, user.expire if expire is None else expire, comment
        )
        return secret

    def remove_token(self, userid: str, name: str) -> None:
        """Delete the token and its ACL entries (PVE drops them with the token)."""
        del self._user(userid).tokens[name]
        self.acls = [e for e in self.acls if e.ugid != f"{userid}!{name}"]

    def set_acl(self, path: str, ugid: str, roleid: str, propagate: bool = True) -> None:
        """Grant ``roleid`` on ``path`` to a user or full token id (replacing the propagate flag)."""
        norm = normalize_path(path)
        if norm is None:
            raise ValueError(f"invalid ACL path '{path}'")
        if self.role_privileges(roleid) is None:
            raise ValueError(f"role '{roleid}' does not exist")
        if not self.has_ugid(ugid):
            raise ValueError(f"no such user or token '{ugid}'")
        self.remove_acl(norm, ugid, roleid)
        self.acls.append(AclEntry(norm, ugid, roleid, propagate))

    def role_privileges(self, roleid: str) -> frozenset[str] | None:
        """The privileges of a built-in or custom role; None when no such role exists."""
        builtin = ROLES.get(roleid)
        return builtin if builtin is not None else self.roles.get(roleid)

    def add_role(self, roleid: str, privs: Iterable[str] = ()) -> None:
        """Create a custom role (Role.pm create_role). Raises ValueError if it exists or is reserved."""
        if re.match(r"^PVE", roleid, re.IGNORECASE):
            raise ValueError("cannot use role ID starting with the (case-insensitive) 'PVE' namespace")
        if self.role_privileges(roleid) is not None:
            raise ValueError(f"role '{roleid}' already exists")
        self.roles[roleid] = _known_privileges(privs)

    def set_role_privileges(self, roleid: str, privs: Iterable[str], *, append: bool = False) -> None:
        """Replace (or with ``append`` extend) a custom role's privileges (Role.pm update_role)."""
        if roleid in ROLES:
            raise ValueError(f"auto-generated role '{roleid}' cannot be modified")
        if roleid not in self.roles:
            raise ValueError(f"role '{roleid}' does not exist")
        self.roles[roleid] = _known_privileges(privs) | (self.roles[roleid] if append else frozenset())

    def remove_role(self, roleid: str) -> None:
        """Delete a custom role. Like PVE, ACL entries naming it stay and simply grant nothing."""
        if roleid in ROLES:
            raise ValueError(f"auto-generated role '{roleid}' cannot be deleted")
        if roleid not in self.roles:
            raise ValueError(f"role '{roleid}' does not exist")
        del self.roles[roleid]

    def remove_acl(self, path: str, ugid: str, roleid: str) -> None:
        self.acls = [e for e in self.acls if (e.path, e.ugid, e.roleid) != (path, ugid, roleid)]

    def remove_path(self, path: str) -> None:
        """Drop every ACL entry on ``path``, as PVE does when it destroys the guest ``/vms/<vmid>``."""
        self.acls = [e for e in self.acls if e.path != path]

    def has_ugid(self, ugid: str) -> bool:
        """Whether ``ugid`` names an existing user or token."""
        if ugid in self.users:
            return True
        userid, _, name = ugid.rpartition("!")
        user = self.users.get(userid)
        return user is not None and name in user.tokens

    def _user(self, userid: str) -> User:
        try:
            return self.users[userid]
        except KeyError:
            raise ValueError(f"no such user '{userid}'") from None

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Add users, tokens and ACLs from a plain mapping (a JSON/TOML file, a test fixture).

        ``{"roles": [{"roleid", "privs": [priv, ...]}],
          "users": [{"userid", "password", "roles": [[path, role], ...]}],
          "tokens": [{"id": "user@realm!name", "secret", "privsep": bool}],
          "acl": [{"path", "ugid", "role", "propagate": bool}]}``. Every key is optional. A listed user
        gets exactly the listed roles (none when ``roles`` is absent); an existing user (root@pam)
        gets its password replaced. Tokens default to ``privsep`` False, like ``add_token``.
        Raises ValueError naming the bad entry (``users[2]: ...``); earlier entries stay applied.
        """
        appliers = (
            ("roles", self._apply_role),
            ("users", self._apply_user),
            ("tokens", self._apply_token),
            ("acl", self._apply_acl),
        )
        for section, apply in appliers:
            for index, entry in enumerate(config.get(section, [])):
                try:
                    apply(entry)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"access config {section}[{index}]: {exc}") from exc

    def _apply_role(self, entry: Mapping[str, Any]) -> None:
        roleid, privs = str(entry["roleid"]), [str(p) for p in entry.get("privs", [])]
        if roleid in self.roles:
            self.set_role_privileges(roleid, privs)
        else:
            self.add_role(roleid, privs)

    def _apply_user(self, entry: Mapping[str, Any]) -> None:
        userid, password = str(entry["userid"]), entry.get("password")
        if userid not in self.users:
            self.add_user(userid, None if password is None else str(password), roles=())
        elif password is not None:
            self.set_password(userid, str(password))
        for path, roleid in entry.get("roles", []):
            self.set_acl(str(path), userid, str(roleid))

    def _apply_token(self, entry: Mapping[str, Any]) -> None:
        userid, _, name = str(entry["id"]).rpartition("!")
        secret = entry.get("secret")
        privsep = bool(entry.get("privsep", False))
        self.add_token(userid, name, None if secret is None else str(secret), privsep=privsep)

    def _apply_acl(self, entry: Mapping[str, Any]) -> None:
        propagate = bool(entry.get("propagate", True))
        self.set_acl(str(entry["path"]), str(entry["ugid"]), str(entry["role"]), propagate)

    # ---- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state: hashes and the signing key, never a plain secret."""
        return {
            "users": {uid: asdict(user) for uid, user in self.users.items()},
            "acl": [asdict(e) for e in self.acls],
            "roles": {roleid: sorted(privs) for roleid, privs in sorted(self.roles.items())},
            "signing_key": _b64(self.signing_key),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccessState:
        users = {}
        for uid, raw in data["users"].items():
            tokens = {name: Token(**tok) for name, tok in raw.get("tokens", {}).items()}
            users[uid] = User(**{**raw, "tokens": tokens})
        acls = [AclEntry(**e) for e in data.get("acl", [])]
        roles = {roleid: frozenset(privs) for roleid, privs in data.get("roles", {}).items()}
        return cls(users=users, acls=acls, signing_key=base64.b64decode(data["signing_key"]), roles=roles)

    # ---- tickets --------------------------------------------------------------------------------
    def issue_ticket(self, userid: str, now: float) -> str:
        """``PVE:<userid>:<HEX>::<signature>``, valid for 2 h from ``now``."""
        plain = f"PVE:{userid}:{int(now):08X}"
        return f"{plain}::{_b64(_hmac(self.signing_key, plain))}"

    def ticket_user(self, ticket: str, now: float) -> str | None:
        """The userid of a genuine ticket inside its validity window at ``now``, else None."""
        plain, sep, signature = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE" or not re.fullmatch(r"[0-9A-F]{8}", parts[2]):
            return None
        expected = _b64(_hmac(self.signing_key, plain))
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return parts[1] if _fresh(int(parts[2], 16), now) else None

    def issue_csrf_token(self, userid: str, now: float) -> str:
        """``<HEX>:<base64 HMAC>``; Digest::SHA's base64 has no padding, so neither has this."""
        stamp = f"{int(now):08X}"
        return f"{stamp}:{_b64(_hmac(self.signing_key, f'{stamp}:{userid}')).rstrip('=')}"

    def csrf_token_valid(self, userid: str, token: str, now: float) -> bool:
        stamp, _, signature = token.partition(":")
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", stamp):
            return False
        expected = _b64(_hmac(self.signing_key, f"{stamp}:{userid}")).rstrip("=")
        return hmac.compare_digest(signature.encode(), expected.encode()) and _fresh(int(stamp, 16), now)

    # ---- credentials ----------------------------------------------------------------------------
    def secret_matches(self, secret: str, record: str | None) -> bool:
        """``verify_secret`` with a per-process cache, so a token costs one scrypt, not one per request."""
        if record is None:
            return False
        fast = _hmac(self.signing_key, secret)
        cached = self._verified.get(record)
        if cached is not None and hmac.compare_digest(cached, fast):
            return True
        if not verify_secret(secret, record):
            return False
        self._verified[record] = fast
        return True

    def login(
        self,
        username: str,
        password: str,
        now: float,
        realm: str | None = None,
        *,
        path: str | None = None,
        privs: str | None = None,
    ) -> dict[str, Any]:
        """POST /access/ticket: ``{"username", "ticket", "CSRFPreventionToken", "cap"}``.

        ``username`` is ``user@realm``, or ``user`` plus ``realm``. ``password`` may instead be a valid
        ticket of that user (renewal) or of root@pam (who may mint tickets for anyone). With ``path`` and
        ``privs`` the credentials are only verified against those privileges, answering ``{"username"}``.
        Every failure is the same 401 "authentication failure" (JSON body), so users cannot be guessed.
        """
        userid = f"{username}@{realm}" if realm and "@" not in username else username
        user = self.users.get(userid)
        ticket_user = self.ticket_user(password, now) if password.startswith("PVE:") else None
        valid = ticket_user in (userid, ROOT_USERID) or self.secret_matches(
            password, user.password_hash if user else None
        )
        if user is None or not valid or not user.active(now):
            raise SimApiError(401, "authentication failure")
        identity = Identity(userid)
        if path is not None and privs is not None:
            wanted = [p for p in re.split(r"[,;\s]+", privs) if p]
            if not has_privileges(self, identity, path, wanted):
                raise SimApiError(401, "authentication failure")
            return {"username": userid}
        return {
            "username": userid,
            "ticket": self.issue_ticket(userid, now),
            "CSRFPreventionToken": self.issue_csrf_token(userid, now),
            "cap": capabilities(self, identity),
        }


def _known_privileges(privs: Iterable[str]) -> frozenset[str]:
    """AccessControl.pm add_role_privs: every name must be a PVE privilege."""
    chosen = frozenset(privs)
    for priv in sorted(chosen - PRIVILEGES):
        raise ValueError(f"invalid privilege '{priv}'")
    return chosen


def _fresh(issued: int, now: float) -> bool:
    # Not issued more than the grace period in the future, not older than lifetime + grace.
    age = now - issued
    return -AUTH_GRACE < age < TICKET_LIFETIME + AUTH_GRACE


def authenticate(
    access: AccessState, *, method: str, headers: Mapping[str, str], cookies: Mapping[str, str], now: float
) -> Identity:
    """Who is calling, the way pveproxy decides before any handler runs (SEMANTICS.md §2).

    ``headers`` have lower-case names; ``cookies`` are already URL-decoded. A ``PVEAuthCookie`` ticket
    (cookie, or ``Authorization: PVEAuthCookie=...``) wins over an ``Authorization: PVEAPIToken=...``
    token. Raises SimAuthError: "No ticket", "Authentication failed!", or for a non-GET ticket request
    without a valid ``CSRFPreventionToken`` header "Permission denied - invalid csrf token".
    """
    auth_header = headers.get("authorization", "")
    ticket = cookies.get("PVEAuthCookie")
    if not ticket:
        match = _COOKIE_IN_AUTH_RE.search(auth_header)
        ticket = unquote(match.group(1)) if match else None
    if ticket:
        return _ticket_identity(access, ticket, method, headers.get("csrfpreventiontoken"), now)
    match = _TOKEN_HEADER_RE.match(auth_header)
    if match:
        return _token_identity(access, match.group(1), now)
    raise SimAuthError("No ticket")


def _ticket_identity(access: AccessState, ticket: str, method: str, csrf: str | None, now: float) -> Identity:
    userid = access.ticket_user(ticket, now)
    user = access.users.get(userid) if userid else None
    if userid is None or user is None or not user.active(now):
        raise SimAuthError("Authentication failed!")
    if method.upper() != "GET" and not (csrf and access.csrf_token_valid(userid, csrf, now)):
        raise SimAuthError("Permission denied - invalid csrf token")
    return Identity(userid)


def _token_identity(access: AccessState, value: str, now: float) -> Identity:
    # AccessControl.pm verify_token: `^(.*)=(.*)$` splits at the LAST '='; the token id at its last '!'.
    full_id, eq, secret = value.rpartition("=")
    userid, bang, name = full_id.rpartition("!")
    user = access.users.get(userid)
    token = user.tokens.get(name) if user is not None and eq and bang else None
    if user is None or token is None or not user.active(now):
        raise SimAuthError("Authentication failed!")
    if (token.expire and token.expire < now) or not access.secret_matches(secret, token.secret_hash):
        raise SimAuthError("Authentication failed!")
    return Identity(userid, name)
