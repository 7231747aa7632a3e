"""The tamper-evident audit log: an append-only hash chain in the ``audit_log`` table.

Each entry's ``hash`` is SHA-256 (or HMAC-SHA256 when a key is given) over a canonical encoding of its
fields and ``prev_hash``, the hash of the entry before it (64 zeros for the first). Changing, deleting,
swapping or inserting an entry breaks the chain, and :func:`verify` names the first entry that cannot
be trusted. Parameters (and token-like text in the target) are redacted *before* hashing and storing,
so secrets never reach the log; :func:`redact` is the same masking for other modules to reuse.

Ids are dense on purpose: :func:`append` locks the log, reads the last entry and inserts ``id + 1``
itself (PostgreSQL sequences skip values when a transaction rolls back; a chosen id does not), so a gap
in the ids always means deleted entries. Appends serialize: SQLite's ``BEGIN IMMEDIATE`` (store/db.py)
takes the write lock when the transaction starts; on PostgreSQL the transaction takes
``LOCK TABLE audit_log IN EXCLUSIVE MODE`` (readers are not blocked), so two processes can never chain
onto the same entry.

What the chain alone cannot show, and what to do about it:

- **Entries cut from the end.** Deleting the newest entries leaves a shorter chain that is intact (and
  the next append then reuses their ids). Keep the head ``verify`` reports (``id:hash``) somewhere the
  database's writers cannot change, and pass it back as ``anchor`` (``audit verify --anchor ID:HASH``):
  a missing or different anchored entry fails verification.
- **A rewritten chain.** Without a key, whoever can write the database can recompute every hash. With
  an HMAC key kept outside the database they cannot; an anchor also catches it. The key applies to the
  whole log: a log written without a key does not verify with one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, text

from autovibe.errors import AutovibeInvalid, AutovibeNotFound
from autovibe.store.db import Database
from autovibe.store.tables import AuditEntry

GENESIS = "0" * 64
MASK = "**********"
PAGE = 1000  # entries read per transaction by export and verify
FORMAT = "autovibe.audit/1"  # the first element of every hashed encoding; a new encoding gets a new tag
_LENGTHS = {"actor": 128, "action": 64, "project": 64, "decision": 16, "outcome": 16}


class AuditRecord(BaseModel):
    """One audit entry as the log holds it (params already redacted)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    project: str | None
    decision: str
    outcome: str
    risk: int
    params: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyResult(BaseModel):
    """``ok`` or the first entry that cannot be trusted (``first_bad``) and what is wrong with it."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    checked: int  # entries read before the verdict (all of them when ok)
    first_bad: int | None = None
    problem: str = ""
    head_id: int | None = None  # the newest entry, when ok: record ``head_id:head_hash`` as an anchor
    head_hash: str | None = None


class AuditEntryNotFound(AutovibeNotFound, KeyError):
    """No audit entry with that id."""


class Writable(Protocol):
    def write(self, text: str, /) -> object: ...


# ---- writing -------------------------------------------------------------------------------------


def append(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str,
    decision: str,
    outcome: str,
    project: str | None = None,
    risk: int = 0,
    params: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    key: bytes | None = None,
) -> AuditRecord:
    """Append one entry, chained to the newest one, in one transaction (see the module docstring)."""
    if at is not None and at.tzinfo is None:
        raise AutovibeInvalid("at: an audit time must be timezone-aware (UTC)")
    fields: dict[str, Any] = {
        "at": (at or datetime.now(UTC)).astimezone(UTC),
        "actor": actor,
        "action": action,
        "target": redact(target),
        "project": project,
        "decision": decision,
        "outcome": outcome,
        "risk": int(risk),
        "params": _plain(redact(dict(params or {}))),
    }
    for name, limit in _LENGTHS.items():
        if fields[name] is not None and len(fields[name]) > limit:
            raise AutovibeInvalid(f"{name}: longer than {limit} characters")
    with db.session() as session:
        if db.engine.dialect.name == "postgresql":
            session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        last = session.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        ).first()
        prev_id, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
        digest = entry_hash(fields, prev_hash=prev_hash, key=key)
        row = AuditEntry(id=prev_id + 1, prev_hash=prev_hash, hash=digest, **fields)
        session.add(row)
        session.flush()
        return AuditRecord.model_validate(row)


def entry_hash(fields: Mapping[str, Any], *, prev_hash: str, key: bytes | None = None) -> str:
    """The hex SHA-256 (HMAC-SHA256 with ``key``) of the canonical encoding of an entry's fields."""
    at: datetime = fields["at"]
    encoded = json.dumps(
        [
            FORMAT,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
            fields["actor"],
            fields["action"],
            fields["target"],
            fields["project"],
            fields["decision"],
            fields["outcome"],
            fields["risk"],
            fields["params"],
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode()
    if key is None:
        return hashlib.sha256(encoded).hexdigest()
    return hmac.new(key, encoded, hashlib.sha256).hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (what the JSON column hands back), so the hash survives a round trip."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


# ---- redaction -----------------------------------------------------------------------------------

_SECRET_PARTS = (
    "password", "passwd", "passphrase", "secret", "token", "authorization", "cookie", "ticket", "csrf",
    "credential", "apikey",
)  # fmt: skip
_SECRET_WORDS = frozenset({"auth", "pass", "pwd", "pin", "otp", "totp"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEYISH = (
    r"[\w-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|ticket|csrf|cookie|authorization)[\w-]*"
)
_STRING_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host
    (re.compile(r"(?P<pre>\b[a-zA-Z][\w+.-]*://[^/\s:@]+:)[^/\s@]+(?=@)"), rf"\g<pre>{MASK}"),
    # PVE API token USER@REALM!TOKENID=SECRET (alone or after PVEAPIToken=): keep who, mask the secret
    (re.compile(r"(?P<pre>[\w.-]+@[\w.-]+![\w.-]+=)[^\s,;&\"'()]+"), rf"\g<pre>{MASK}"),
    # PVE ticket PVE:USER@REALM:HEXTIME::SIGNATURE
    (re.compile(r"(?P<pre>\bPVE:[^\s:]+:)[0-9A-Fa-f]{8}::[A-Za-z0-9+/=]+"), rf"\g<pre>{MASK}"),
    (re.compile(r"(?i)(?P<pre>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\g<pre>{MASK}"),
    (re.compile(r"\bavt_[A-Za-z0-9_-]{6,}"), f"avt_{MASK}"),  # autovibe API tokens
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), f"sk-{MASK}"),  # AI provider keys
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"), MASK),  # JWTs
)


_SECRET_ASSIGNMENT = re.compile(
    rf"(?i)(?P<pre>\b{_KEYISH}[\"']?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|(?:bearer|basic)\s+[^\s&;,\"'}}\]]+|[^\s&;,\"'}}\]]+)"
)  # password=..., secret: ..., CSRFPreventionToken: ..., PVEAuthCookie=..., "api_key": "..."
_ALREADY_MASKED = re.compile(
    rf"(?i)(?:[\w.-]+@[\w.-]+![\w.-]+=|PVE:[^\s:]+:|avt_|sk-|(?:bearer|basic)\s+)?{re.escape(MASK)}"
)


def _mask_assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    if _ALREADY_MASKED.fullmatch(value.strip(quote)):  # an earlier rule kept what is not secret
        return match[0]
    return f"{match['pre']}{quote}{MASK}{quote}"


def redact(value: Any) -> Any:
    """``value`` with secrets masked: anything under a secret-looking key (password, token, key,
    cookie, ticket, csrf…; except ``None`` and booleans) becomes ``MASK``, and token-like text in
    any string (PVE API tokens and tickets, ``secret=…``, bearer tokens, ``avt_…``) is masked in place.
    Mappings, lists and tuples are walked (tuples come back as lists); other values pass through."""
    if isinstance(value, str):
        for pattern, replacement in _STRING_RULES:
            value = pattern.sub(replacement, value)
        return _SECRET_ASSIGNMENT.sub(_mask_assignment, value)
    if isinstance(value, Mapping):
        return {
            k: MASK if is_secret_key(str(k)) and v is not None and not isinstance(v, bool) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def is_secret_key(name: str) -> bool:
    """Whether a parameter name looks like it holds a credential (``password``, ``apiKey``, ``x-auth``)."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    if any(part in squashed for part in _SECRET_PARTS):
        return True
    words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if w]
    return any(w in _SECRET_WORDS or w.endswith("key") for w in words)


# ---- reading -------------------------------------------------------------------------------------


def list_entries(
    db: Database,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    project: str | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """The newest ``limit`` entries matching every filter given, newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if project is not None:
        query = query.where(AuditEntry.project == project)
    with db.session() as session:
        return [AuditRecord.model_validate(row) for row in session.scalars(query)]


def get(db: Database, entry_id: int) -> AuditRecord:
    with db.session() as session:
        row = session.get(AuditEntry, entry_id)
        if row is None:
            raise AuditEntryNotFound(f"no audit entry {entry_id}", hint="list them: autovibe audit list")
        return AuditRecord.model_validate(row)


def export_jsonl(db: Database, stream: Writable) -> int:
    """Write every entry, oldest first, as one JSON object per line; returns how many."""
    count = 0
    for record in _all(db):
        stream.write(json.dumps(record.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count


def _all(db: Database) -> Iterator[AuditRecord]:
    """Every entry in id order, read a page per short transaction (a SQLite transaction holds the
    write lock, so one long read would stall appends for as long as the reader takes)."""
    after = 0
    while True:
        with db.session() as session:
            query = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(PAGE)
            page = [AuditRecord.model_validate(row) for row in session.scalars(query)]
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


# ---- verifying -----------------------------------------------------------------------------------


def verify(db: Database, *, key: bytes | None = None, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the log in id order recomputing every hash and link; see :func:`check_chain`."""
    return check_chain(_all(db), key=key, anchor=anchor)


def check_chain(
    records: Iterable[AuditRecord], *, key: bytes | None = None, anchor: tuple[int, str] | None = None
) -> VerifyResult:
    """Check entries given in id order: dense ids from 1, each hash matching its entry, each
    ``prev_hash`` the hash of the entry before, and (optionally) the anchored entry's hash.
    Stops at the first problem, naming the first entry that cannot be trusted."""
    entries = iter(records)
    previous: AuditRecord | None = None
    current = next(entries, None)
    checked = 0
    while current is not None:
        following = next(entries, None)
        checked += 1
        found = _problem(previous, current, following, key)
        if found is None and anchor is not None and current.id == anchor[0] and current.hash != anchor[1]:
            found = (
                current.id,
                f"entry {current.id}: it does not match the anchor (its hash is {current.hash[:12]}…, the "
                f"anchor says {anchor[1][:12]}…): the log was rewritten up to here",
            )
        if found is not None:
            return VerifyResult(ok=False, checked=checked, first_bad=found[0], problem=found[1])
        previous, current = current, following
    if anchor is not None and (previous is None or previous.id < anchor[0]):
        end = f"the log ends at entry {previous.id}" if previous else "the log is empty"
        return VerifyResult(
            ok=False,
            checked=checked,
            first_bad=anchor[0],
            problem=f"entry {anchor[0]}: the anchored entry is missing ({end}): entries were deleted "
            "from the end of the log",
        )
    return VerifyResult(
        ok=True,
        checked=checked,
        head_id=previous.id if previous else None,
        head_hash=previous.hash if previous else None,
    )


def _problem(
    previous: AuditRecord | None, current: AuditRecord, following: AuditRecord | None, key: bytes | None
) -> tuple[int, str] | None:
    n = current.id
    expected_id = previous.id + 1 if previous else 1
    if n != expected_id:
        missing = f"({expected_id})" if n == expected_id + 1 else f"({expected_id} to {n - 1})"
        before = "the entry before it" if n == expected_id + 1 else "the entries before it"
        return n, f"entry {n}: {before} {missing} {'is' if n == expected_id + 1 else 'are'} missing"
    fields = current.model_dump(exclude={"id", "prev_hash", "hash"})
    if entry_hash(fields, prev_hash=current.prev_hash, key=key) != current.hash:
        why = "changed after it was written, or written with another key" if key else "changed"
        return n, f"entry {n}: its contents were changed (its hash does not match them: {why})"
    if previous is None:
        if current.prev_hash != GENESIS:
            return n, f"entry {n}: it does not start the chain (its prev_hash is not the genesis hash)"
        return None
    if current.prev_hash == previous.hash:
        return None
    p = previous.id
    if following is not None and following.prev_hash != current.hash:
        return n, (
            f"entry {n}: it is out of place: it is not chained to entry {p}, nor entry {following.id} to "
            "it (entries were swapped or replaced)"
        )
    if following is not None:
        return p, (
            f"entry {p}: it was changed and re-hashed, or entries after it were deleted and the rest "
            f"renumbered: entry {n} is chained to a different entry before it"
        )
    return p, (
        f"entry {p}: it was changed and re-hashed, or the last entry ({n}) was forged: entry {n} is not "
        f"chained to entry {p}"
    )
