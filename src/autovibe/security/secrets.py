"""Secrets at rest and in logs: a Fernet key ring, the encrypted secret store, and redaction.

- :class:`KeyRing`: Fernet keys, newest first (the first encrypts, any of them decrypts). They come
  from the key file (``$XDG_CONFIG_HOME/autovibe/secret.key``, mode 0600, one key a line) or from a
  value the caller read at its edge (``AUTOVIBE_SECRET_KEY``, several keys separated by commas).
- :class:`SecretStore`: named secrets in the ``secrets`` table, encrypted with the key ring.
  :func:`rotate` adds a key, re-encrypts every secret in one transaction, then retires the old keys.
- :func:`redact_processor` (structlog) and :class:`RedactingFilter` (stdlib logging) mask values
  under secret-looking keys, token-like substrings, and every value given to :func:`register_secret`.

Secret values never appear in reprs, errors or logs; names do. The store is imported lazily so that
the CLI can install the log processor without paying for SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
import tomllib
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote, urlsplit

import platformdirs
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from autovibe.errors import AutovibeInvalid, AutovibeNotFound

if TYPE_CHECKING:
    from autovibe.settings import Settings
    from autovibe.store.db import Database

KEY_ENV = "AUTOVIBE_SECRET_KEY"
MASK = "**********"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")  # fits secrets.name (64 characters)
_OTHERS = stat.S_IRWXG | stat.S_IRWXO
_log = structlog.get_logger("autovibe.secrets")


class SecretKeyInvalid(AutovibeInvalid):
    """The key ring is missing, unsafe, malformed, or not the one that encrypted a secret (exit code 2)."""


class SecretNameInvalid(AutovibeInvalid, ValueError):
    """A secret name autovibe cannot store (exit code 2)."""


class SecretNotFound(AutovibeNotFound, KeyError):
    """No secret has that name (exit code 4)."""


# ---- the key ring ---------------------------------------------------------------------------------


def default_key_path() -> Path:
    """``secret.key`` in the XDG config dir (``~/.config/autovibe/secret.key`` on Linux)."""
    return platformdirs.user_config_path("autovibe") / "secret.key"


class KeyRing:
    """Fernet keys, newest first. Build with :meth:`load`; ``source`` says where they came from."""

    def __init__(self, keys: Sequence[bytes], *, source: str, path: Path | None = None) -> None:
        if not keys:
            raise SecretKeyInvalid(f"{source} holds no key", hint="remove it and let autovibe create one")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError:
            raise SecretKeyInvalid(
                f"{source} holds something that is not a Fernet key",
                hint="a key is 32 url-safe base64-encoded bytes, one per line (newest first)",
            ) from None
        self._keys = tuple(keys)
        for key in self._keys:
            register_secret(key.decode("ascii", errors="replace"))
        self.source = source
        self.path = path

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} key(s) from {self.source})"

    @property
    def key_count(self) -> int:
        return len(self._keys)

    @classmethod
    def load(cls, *, env_value: str | None = None, path: Path | None = None, create: bool = False) -> KeyRing:
        """Keys from ``env_value`` (the caller read ``AUTOVIBE_SECRET_KEY``) when given, else from the key
        file at ``path`` (default :func:`default_key_path`), created with one new key when ``create``."""
        if env_value is not None and env_value.strip():
            keys = [part.strip().encode() for part in env_value.split(",") if part.strip()]
            return cls(keys, source=KEY_ENV)
        path = path or default_key_path()
        try:
            return cls(_read_key_file(path), source=f"key file {path}", path=path)
        except FileNotFoundError:
            if not create:
                raise SecretKeyInvalid(
                    f"no key file at {path}",
                    hint=f"store a secret first (autovibe secret set NAME) or set {KEY_ENV}",
                ) from None
        with contextlib.suppress(FileExistsError):  # another process created it first: use that one
            _write_key_file(path, [Fernet.generate_key()], replace=False)
        return cls(_read_key_file(path), source=f"key file {path}", path=path)

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt(self, token: str, *, name: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise self._wrong_key(name) from None

    def reencrypt(self, token: str, *, name: str) -> str:
        """``token`` encrypted with the newest key (keeping its timestamp)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise self._wrong_key(name) from None

    def _wrong_key(self, name: str) -> SecretKeyInvalid:
        return SecretKeyInvalid(
            f"secret {name!r} cannot be decrypted with the {self.source}: another key encrypted it",
            hint=f"use the key file or {KEY_ENV} it was stored with, or store it again: "
            f"autovibe secret set {name}",
        )


def _read_key_file(path: Path) -> list[bytes]:
    """The keys in ``path``; refuses a file other users could read or change. FileNotFoundError if absent."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if os.name == "posix" and mode & _OTHERS:
            raise SecretKeyInvalid(
                f"key file {path} can be used by other users (mode {stat.S_IMODE(mode):04o})",
                hint=f"run: chmod 600 {path}",
            )
        text = handle.read().decode("ascii", errors="replace")
    return [line.strip().encode() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _write_key_file(path: Path, keys: Sequence[bytes], *, replace: bool) -> None:
    """Write ``keys`` to a new 0600 file beside ``path``, then move it into place atomically: ``replace``
    swaps it in, otherwise it is linked (FileExistsError if ``path`` exists). Never a chmod afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(key + b"\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# ---- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: its name and when it was stored; never its value."""

    name: str
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise SecretNameInvalid(
            f"secret name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def _not_found(name: str) -> SecretNotFound:
    return SecretNotFound(
        f"no secret named {name!r}",
        hint=f"list them: autovibe secret list; store it: autovibe secret set {name}",
    )


def list_secrets(db: Database) -> tuple[SecretInfo, ...]:
    """Every stored secret's name and timestamps, by name (needs no key)."""
    from sqlalchemy import select

    from autovibe.store.tables import StoredSecret

    with db.session() as session:
        rows = session.scalars(select(StoredSecret).order_by(StoredSecret.name)).all()
        return tuple(SecretInfo(row.name, row.created_at, row.updated_at) for row in rows)


def delete_secret(db: Database, name: str) -> None:
    """Forget the secret ``name``; :class:`SecretNotFound` if there is none (needs no key)."""
    from sqlalchemy import CursorResult, delete

    from autovibe.store.tables import StoredSecret

    with db.session() as session:
        result = cast(
            CursorResult[Any], session.execute(delete(StoredSecret).where(StoredSecret.name == name))
        )
        if result.rowcount == 0:
            raise _not_found(name)
    _log.debug("secret deleted", name=name)


class SecretStore:
    """Named secrets, Fernet-encrypted in the ``secrets`` table."""

    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self._db = db
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"SecretStore({self._db.safe_url}, {self._keyring!r})"

    def put(self, name: str, value: str) -> SecretInfo:
        """Store ``value`` under ``name``, replacing any value it had."""
        from sqlalchemy import select

        from autovibe.store.tables import StoredSecret

        check_name(name)
        if not value:
            raise AutovibeInvalid(f"secret {name!r} is empty; give it a value")
        register_secret(value)
        ciphertext = self._keyring.encrypt(value)
        with self._db.session() as session:
            row = session.scalars(select(StoredSecret).where(StoredSecret.name == name)).one_or_none()
            if row is None:
                row = StoredSecret(name=name, ciphertext=ciphertext)
                session.add(row)
            else:
                row.ciphertext = ciphertext
            session.flush()
            info = SecretInfo(row.name, row.created_at, row.updated_at)
        _log.debug("secret stored", name=name, keyring=repr(self._keyring))
        return info

    def get(self, name: str) -> str:
        """The value of ``name``, registered for redaction; :class:`SecretNotFound` if there is none."""
        from sqlalchemy import select

        from autovibe.store.tables import StoredSecret

        with self._db.session() as session:
            ciphertext = session.scalar(select(StoredSecret.ciphertext).where(StoredSecret.name == name))
        if ciphertext is None:
            raise _not_found(name)
        value = self._keyring.decrypt(ciphertext, name=name)
        register_secret(value)
        _log.debug("secret read", name=name)
        return value

    def list(self) -> tuple[SecretInfo, ...]:
        return list_secrets(self._db)

    def delete(self, name: str) -> None:
        delete_secret(self._db, name)


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate` did: the new key ring and how many secrets it re-encrypted."""

    keyring: KeyRing
    reencrypted: int
    retired_keys: int


def rotate(db: Database, keyring: KeyRing) -> Rotation:
    """Add a new key to the key file, re-encrypt every secret with it in one transaction, and only after
    that committed keep the new key alone. A crash at any point leaves a key file that decrypts them all.
    """
    from sqlalchemy import select, update

    from autovibe.store.tables import StoredSecret

    if keyring.path is None:
        raise SecretKeyInvalid(
            f"the key comes from {keyring.source}, which autovibe cannot rewrite",
            hint=f"unset {KEY_ENV} to rotate the key file, or put a new key first in {KEY_ENV} yourself",
        )
    new_key = Fernet.generate_key()
    _write_key_file(keyring.path, [new_key, *keyring._keys], replace=True)
    both = KeyRing([new_key, *keyring._keys], source=keyring.source, path=keyring.path)
    count = 0
    with db.session() as session:
        rows = session.execute(select(StoredSecret.id, StoredSecret.name, StoredSecret.ciphertext)).all()
        for row_id, name, ciphertext in rows:
            # Setting updated_at to itself keeps it: the value did not change, only its encryption.
            session.execute(
                update(StoredSecret)
                .where(StoredSecret.id == row_id)
                .values(ciphertext=both.reencrypt(ciphertext, name=name), updated_at=StoredSecret.updated_at)
            )
            count += 1
    _log.info("secrets re-encrypted with a new key", count=count, keyring=repr(both))
    _write_key_file(keyring.path, [new_key], replace=True)
    fresh = KeyRing([new_key], source=keyring.source, path=keyring.path)
    return Rotation(keyring=fresh, reencrypted=count, retired_keys=keyring.key_count)


# ---- redaction ------------------------------------------------------------------------------------

# Log keys whose values are credentials; matched as substrings, case-insensitively.
SECRET_KEY_WORDS = (
    "password", "passwd", "secret", "token", "ticket", "authorization", "cookie", "csrf",
    "api_key", "apikey", "private_key", "credential",
)  # fmt: skip
_WORDS = r"(?:password|passwd|secret|token|ticket|api[_\-]?key)"
_SEP = r"[\"']?\s*[=:]\s*[\"']?"  # key=value, key: value, "key": "value"


def _masking(pattern: str, flags: int = 0) -> tuple[re.Pattern[str], str]:
    """A pattern whose ``keep`` group (a token's id, a header name) stays; the rest becomes the mask."""
    regex = re.compile(pattern, flags)
    return regex, (r"\g<keep>" + MASK) if "keep" in regex.groupindex else MASK


# Applied in order to every string logged.
_PATTERNS = (
    # PVEAPIToken=user@realm!name=uuid and the bare user@realm!name=uuid form: the token id stays.
    _masking(r"(?P<keep>[^\s:/=!@'\"]+@[A-Za-z][\w.\-]*![A-Za-z][\w.\-]*=)[^\s'\",;&]+"),
    _masking(rf"(?P<keep>\b(?:PVEAuthCookie|CSRFPreventionToken){_SEP})[^\s;,'\"]+", re.IGNORECASE),
    # A PVE ticket on its own: PVE:user@realm:HEXTIME::signature (also URL-encoded).
    _masking(r"\bPVE(?::|%3A)[^\s:%]+(?::|%3A)[0-9A-F]{8}(?:::|%3A%3A)[A-Za-z0-9+/=%]+"),
    _masking(
        rf"(?P<keep>\bAuthorization{_SEP}(?:(?:Bearer|Basic|Token)\s+|PVEAPIToken=[^\s'\",;=]+=)?)[^\s'\",;]+",
        re.IGNORECASE,
    ),
    _masking(r"(?P<keep>\bBearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    _masking(r"(?P<keep>\bavt_)[A-Za-z0-9_\-]{6,}"),  # autovibe API tokens
    _masking(r"\bgAAAAA[A-Za-z0-9_\-]{20,}={0,2}"),  # Fernet tokens
    _masking(r"\bsk-(?:ant-)?[A-Za-z0-9_\-]{16,}"),  # Anthropic / OpenAI-style API keys
    _masking(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)[^\s@/]+(?=@)"),  # password in a URL
    # secret=..., password: ..., "api_key": "...", pve_token=..., csrf_token=...
    _masking(rf"(?<![A-Za-z0-9])(?P<keep>(?:[A-Za-z0-9]+[_\-])*{_WORDS}s?{_SEP})[^\s'\",;&)}}\]]+", re.I),
)
MIN_REGISTERED_LENGTH = 4  # shorter values would mask random bits of every line
_lock = threading.Lock()
_registered: frozenset[str] = frozenset()
_registered_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its URL-encoded form) exactly wherever it appears in logs from now on."""
    global _registered, _registered_re
    if value is None or len(value) < MIN_REGISTERED_LENGTH:
        return
    forms = {value, quote(value, safe="")}
    with _lock:
        if forms <= _registered:
            return
        _registered = _registered | forms
        ordered = sorted(_registered, key=len, reverse=True)  # longest first: a value inside another
        _registered_re = re.compile("|".join(re.escape(item) for item in ordered))


def forget_registered_secrets() -> None:
    """Empty the registry (tests)."""
    global _registered, _registered_re
    with _lock:
        _registered, _registered_re = frozenset(), None


def register_settings_secrets(settings: Settings) -> None:
    """Register the secrets ``settings`` hold: PVE token and password, webhook secret, database password."""
    for value in settings_secret_values(settings):
        register_secret(value)


def settings_secret_values(settings: Settings) -> list[str]:
    values: list[str] = []
    for secret in (settings.pve_token, settings.pve_password, settings.usage.webhook_secret):
        if secret is not None:
            text = secret.get_secret_value()
            values += [text, text.rpartition("=")[2]] if secret is settings.pve_token else [text]
    if settings.database_url is not None:
        password = urlsplit(settings.database_url.get_secret_value()).password
        if password:
            values += [password, unquote(password)]
    return values


def redact_text(text: str) -> str:
    """``text`` with registered secrets and token-like substrings replaced by ``**********``."""
    pattern = _registered_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


def redact_value(value: Any) -> Any:
    """A log value with secrets masked: strings, mappings (by key and value) and sequences, recursively;
    other objects are replaced by their redacted ``repr`` only when it held something to mask."""
    if value is None or isinstance(value, bool | int | float | datetime):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_item(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact_value(item) for item in value]
        return items if isinstance(value, list | set | frozenset) else tuple(items)
    text = repr(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def _redact_item(key: str, value: Any) -> Any:
    if value is not None and is_secret_key(key):
        return MASK
    return redact_value(value)


def redact_processor(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: masks values under secret-looking keys and secrets inside every value.
    An ``exc_info`` is formatted here (as ``format_exc_info`` does) so its text is redacted too."""
    if event.get("exc_info"):
        event = structlog.processors.format_exc_info(_logger, method, event)
    for key in list(event):
        event[key] = _redact_item(key, event[key])
    return event


class RedactingFilter(logging.Filter):
    """stdlib logging filter (put it on handlers): the same masking for records of libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


# ---- config files ---------------------------------------------------------------------------------


def config_permissions_warning(path: Path) -> str | None:
    """A warning when the config file at ``path`` holds secrets and other users can read it."""
    if os.name != "posix":
        return None
    try:
        mode = path.stat().st_mode
        if not mode & (stat.S_IRGRP | stat.S_IROTH):
            return None
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, tomllib.TOMLDecodeError):
        return None
    found = _secret_settings(values)
    if not found:
        return None
    return (
        f"config file {path} holds secrets ({', '.join(found)}) but other users can read it "
        f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
    )


def _secret_settings(values: Mapping[str, Any]) -> list[str]:
    found = [key for key in ("pve_token", "pve_password") if values.get(key)]
    url = values.get("database_url")
    if isinstance(url, str) and _url_password(url):
        found.append("database_url")
    usage = values.get("usage")
    if isinstance(usage, Mapping) and usage.get("webhook_secret"):
        found.append("usage.webhook_secret")
    return found


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
