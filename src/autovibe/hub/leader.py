"""Which replica leads (runs the scheduler), and which replicas are alive.

On PostgreSQL the leader holds a session-level advisory lock on a connection of its own: when the
process dies, PostgreSQL drops the connection and the lock with it, and the next follower to poll takes
over. On SQLite (one host by nature) an exclusive ``flock`` on a file beside the database plays the same
role. Replicas also write a heartbeat row, so the leader can tell a dead replica from a slow one.
"""

from __future__ import annotations

import contextlib
import fcntl
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import structlog
from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError

from autovibe.store.db import Database
from autovibe.store.tables import HubReplica, utcnow

LEADER_LOCK = 0x6175_7476_0002  # "autv" + 2: the advisory lock key the leader holds
_log = structlog.get_logger("autovibe.hub")


class Leadership:
    """``try_lead()`` as often as you like: True while this replica holds the lead."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._connection: Any = None
        self._file: IO[bytes] | None = None
        self.is_leader = False

    def try_lead(self) -> bool:
        try:
            self.is_leader = self._postgres() if self._is_postgres else self._sqlite()
        except (DBAPIError, OSError) as exc:
            _log.warning("hub.leadership_check_failed", error=str(exc))
            self.release()
        return self.is_leader

    @property
    def _is_postgres(self) -> bool:
        return self.db.engine.dialect.name == "postgresql"

    def _postgres(self) -> bool:
        if self._connection is None:
            self._connection = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self.is_leader:
            self._connection.execute(text("SELECT 1"))  # still connected, so still holding the lock
            return True
        return bool(
            self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK}).scalar()
        )

    def _sqlite(self) -> bool:
        if self.is_leader:
            return True
        database = self.db.engine.url.database
        if not database or database == ":memory:":
            return True  # a private in-memory store has no other replica
        if self._file is None:
            self._file = Path(f"{database}.leader.lock").open("ab")  # noqa: SIM115  (held while leading)
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        self.is_leader = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()  # closing the session releases the advisory lock
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class Replicas:
    """The heartbeat table: one row per running replica, keyed by its journal owner string."""

    def __init__(self, db: Database, replica: str, *, url: str | None = None) -> None:
        self.db = db
        self.replica = replica
        self.url = url

    def beat(self, *, leader: bool) -> None:
        with self.db.session() as session:
            row = session.get(HubReplica, self.replica)
            now = utcnow()
            if row is None:
                session.add(
                    HubReplica(id=self.replica, started_at=now, heartbeat_at=now, leader=leader, url=self.url)
                )
            else:
                row.heartbeat_at, row.leader = now, leader

    def leave(self) -> None:
        with self.db.session() as session:
            session.execute(delete(HubReplica).where(HubReplica.id == self.replica))

    def dead(self, timeout: timedelta, *, now: datetime | None = None) -> set[str]:
        """Replicas whose heartbeat is older than ``timeout`` (their rows are removed)."""
        cutoff = (now or utcnow()) - timeout
        with self.db.session() as session:
            rows = session.scalars(select(HubReplica).where(HubReplica.heartbeat_at < cutoff)).all()
            dead = {row.id for row in rows}
            for row in rows:
                session.delete(row)
            return dead

    def alive(self) -> list[HubReplica]:
        with self.db.session() as session:
            rows = list(session.scalars(select(HubReplica).order_by(HubReplica.started_at)))
            for row in rows:
                session.expunge(row)
            return rows


__all__ = ["LEADER_LOCK", "Leadership", "Replicas"]
