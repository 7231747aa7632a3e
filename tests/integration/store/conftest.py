"""Store fixtures: every test runs once on SQLite and once on a real PostgreSQL (marker ``postgres``).

One PostgreSQL cluster serves the whole session (``initdb`` once); each test gets its own empty
database (``CREATE DATABASE test_<random>``, dropped afterwards), so tests may commit freely. Tests
that only need rows use ``session``: a transaction rolled back at the end (STYLE 19).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from autovibe.store.db import Database, sqlite_url
from tests.fakes.postgres import PostgresServer, PostgresUnavailable

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session; skipped, with the reason, when none can run here."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for the postgres store tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty (unmigrated) database on the parametrized backend."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "autovibe.db")
        return
    # Looked up lazily so a SQLite-only run (-m "not postgres") never starts a server.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An opened (migrated) ``Database`` on a fresh database; disposed afterwards."""
    database = Database.open(database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back: nothing it writes outlives the test.

    ``session.commit()`` inside a test only releases a savepoint (``join_transaction_mode``), as in
    Dispatch's ``tests/conftest.py``.
    """
    with db.engine.connect() as connection:
        # On SQLite the engine itself issues BEGIN IMMEDIATE here (store/db.py), so the session's
        # SAVEPOINT is nested in a real transaction and its RELEASE is no commit.
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as rolled_back:
            yield rolled_back
        outer.rollback()
