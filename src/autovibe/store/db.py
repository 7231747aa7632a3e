"""The database handle: one engine per URL, short transactions, migrations applied on open.

SQLite (WAL, foreign keys on, a busy timeout so concurrent CLI processes wait instead of failing) is
the embedded default; PostgreSQL (``postgresql+psycopg://...``) the scale-out path. Sessions are
synchronous and short: each journal write is its own small transaction, so a process killed at any
point leaves at most the step it was running marked "running".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from autovibe.store.errors import StoreConflict, StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = 0x6175_7476_0001  # PostgreSQL advisory lock key held while migrating


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Database:
    """``Database.open(url)`` migrates to the newest schema; ``with db.session() as s:`` is a transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        db = cls(url)
        if migrate and not db.at_head():
            db.upgrade()
        return db

    def at_head(self) -> bool:
        """Whether the schema is already the newest one. Every CLI command opens the store, and asking
        Alembic costs ~0.15 s of imports and script loading; one query answers the common case."""
        head = head_revision()
        if head is None:
            return False
        try:
            with self.engine.connect() as connection:
                found = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except DBAPIError:  # no table yet: a new database
            return False
        return list(found) == [head]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise StoreConflict(f"conflicting record: {exc.orig}") from exc
        except OperationalError as exc:
            raise StoreUnavailable(
                f"database error: {exc.orig}", hint=f"check the database at {self.safe_url}"
            ) from exc

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` (idempotent)."""
        from alembic import command

        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Hub replicas starting together would otherwise race to create the same tables.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                config = _alembic_config(connection)
                command.upgrade(config, revision)
        except OperationalError as exc:
            raise StoreUnavailable(f"cannot migrate {self.safe_url}: {exc.orig}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take SQLite's write lock when the transaction starts, not at its first write, so a
    # check-then-insert by two processes cannot interleave (the busy timeout makes the second wait).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is switched off: _sqlite_begin_immediate issues it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL still survives a killed process (the journal's promise); only an OS crash or
    # power loss can drop the last commits. It removes an fsync per journal write (~25 per deploy).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.MULTILINE)
_DOWN = re.compile(r'^down_revision\s*=\s*"([^"]+)"', re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The newest migration's revision, read from the version files themselves (the one no other file
    names as its ``down_revision``); None when that is not a single revision (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for entry in (resources.files("autovibe.store") / "migrations" / "versions").iterdir():
        if not entry.name.endswith(".py"):
            continue
        source = entry.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(source))
        parents.update(_DOWN.findall(source))
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("autovibe.store") / "migrations"))
    config.attributes["connection"] = connection
    return config
