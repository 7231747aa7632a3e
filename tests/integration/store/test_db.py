"""``Database`` on SQLite and PostgreSQL: transactions, constraints, aware times, JSON, SQLite concurrency."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session

from autovibe.store.db import SQLITE_BUSY_TIMEOUT_MS, Database, sqlite_url
from autovibe.store.errors import StoreConflict
from autovibe.store.tables import Machine, Operation, Project

WAIT_S = 30  # upper bound for a thread handshake; reached only when something is broken


def _machine(project_id: int, name: str = "m1", vmid: int = 101) -> Machine:
    return Machine(
        name=name, vmid=vmid, node="pve1", project_id=project_id, profile="claude_code", created_by="t"
    )


def _project_id(db: Database, name: str) -> int:
    with db.session() as s:
        project = Project(name=name)
        s.add(project)
        s.flush()
        return project.id


def _names(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Project.name).order_by(Project.name)))


def _count(db: Database, model: type[Any]) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = getattr(exc, "orig", None) or exc.__cause__


# Transactions


def test_session_commits_when_the_block_ends(db: Database) -> None:
    with db.session() as s:
        s.add(Project(name="alpha"))
    assert _names(db) == ["alpha"]


def test_exception_in_the_block_rolls_everything_back(db: Database) -> None:
    _project_id(db, "before")
    with pytest.raises(RuntimeError, match="boom"), db.session() as s:
        s.add(Project(name="gone"))
        s.flush()  # the row reached the database inside the transaction
        project = s.scalars(select(Project).where(Project.name == "before")).one()
        project.description = "changed"
        s.flush()
        raise RuntimeError("boom")

    assert _names(db) == ["before"]
    with db.session() as s:
        assert s.scalars(select(Project.description)).one() == ""


def test_session_fixture_commit_is_only_a_savepoint(db: Database, session: Session) -> None:
    """The rolled-back ``session`` fixture: a commit inside a test stays invisible to everyone else."""
    session.add(Project(name="private"))
    session.commit()
    assert session.scalars(select(Project.name)).all() == ["private"]
    assert _names_seen_by_a_plain_reader(db) == []


def _names_seen_by_a_plain_reader(db: Database) -> list[str]:
    """What another client sees. On SQLite a store session would queue behind the fixture's open write
    transaction (BEGIN IMMEDIATE), so look through a plain read-only connection instead."""
    if db.engine.dialect.name != "sqlite":
        return _names(db)
    path = db.engine.url.database
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as plain:
        return [row[0] for row in plain.execute("SELECT name FROM projects ORDER BY name")]


# Constraints


def test_two_projects_with_one_name_conflict(db: Database) -> None:
    _project_id(db, "alpha")
    with pytest.raises(StoreConflict, match="conflicting record"), db.session() as s:
        s.add(Project(name="alpha", description="second"))
    with db.session() as s:
        assert s.scalars(select(Project.description)).all() == [""]


def test_machine_of_a_missing_project_is_refused(db: Database) -> None:
    """Foreign keys hold on SQLite too (``PRAGMA foreign_keys=ON`` on every connection)."""
    with pytest.raises(StoreConflict), db.session() as s:
        s.add(_machine(project_id=424242))
    assert _count(db, Machine) == 0


def test_deleting_a_project_with_machines_is_refused(db: Database) -> None:
    """``ON DELETE RESTRICT`` in the database itself, not only in the ORM."""
    project_id = _project_id(db, "alpha")
    with db.session() as s:
        s.add(_machine(project_id))

    with pytest.raises(StoreConflict), db.session() as s:
        s.execute(delete(Project).where(Project.id == project_id))
    with pytest.raises(StoreConflict), db.session() as s:
        s.delete(s.get_one(Project, project_id))

    assert _names(db) == ["alpha"]
    with db.session() as s:
        assert s.scalars(select(Machine.project_id)).all() == [project_id]


# Values


def test_aware_datetimes_come_back_as_the_same_instant_in_utc(db: Database) -> None:
    local = datetime(2026, 11, 21, 23, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with db.session() as s:
        s.add(Project(name="alpha", created_at=local))

    with db.session() as s:
        loaded = s.scalars(select(Project.created_at)).one()

    assert loaded == local
    assert loaded.tzinfo is UTC
    assert loaded == datetime(2026, 11, 21, 18, 0, 15, 123456, tzinfo=UTC)


def test_times_compare_and_sort_by_instant_not_by_local_clock(db: Database) -> None:
    """12:00+05:00 is 07:00Z, before 08:00Z: the store must compare instants, whatever offsets came in."""
    early = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    late = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    with db.session() as s:
        s.add_all([Project(name="late", created_at=late), Project(name="early", created_at=early)])

    with db.session() as s:
        ordered = s.scalars(select(Project.name).order_by(Project.created_at)).all()
        before_late = s.scalars(select(Project.name).where(Project.created_at < late)).all()

    assert ordered == ["early", "late"]
    assert before_late == ["early"]


def test_naive_datetime_is_refused(db: Database) -> None:
    # Any exception type will do (today SQLAlchemy's StatementError); the cause is checked below.
    with pytest.raises(Exception) as info, db.session() as s:
        s.add(Project(name="naive", created_at=datetime(2026, 1, 1, 12, 0)))
    assert any(isinstance(exc, ValueError) and "naive datetime" in str(exc) for exc in _causes(info.value))
    assert _names(db) == []


def test_json_columns_round_trip(db: Database) -> None:
    labels = {"critical": True, "owner": "zoë", "tags": ["a", "b"], "nested": {"n": 3, "none": None}}
    params = {"spec": {"cores": 2, "memory_mib": 4096, "ratio": 0.25}, "nodes": ["pve1", "pve2"], "empty": {}}
    with db.session() as s:
        s.add(Project(name="alpha", labels=labels))
        s.add(Operation(id="op-1", kind="deploy", status="running", params=params, owner="h:1", actor="root"))

    with db.session() as s:
        assert s.scalars(select(Project.labels)).one() == labels
        operation = s.get_one(Operation, "op-1")
        assert operation.params == params
        assert operation.state == {}


# SQLite concurrency


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two independent ``Database`` objects (two engines, two pools) on one SQLite file."""
    url = sqlite_url(tmp_path / "shared.db")
    first = Database.open(url)
    second = Database.open(url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


def test_sqlite_connections_use_wal_and_a_busy_timeout(sqlite_pair: tuple[Database, Database]) -> None:
    with sqlite_pair[0].engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_two_sqlite_writers_both_succeed(sqlite_pair: tuple[Database, Database]) -> None:
    """Two processes' worth of writers on one file, started together: the busy timeout makes each wait."""
    per_writer = 50
    start = threading.Barrier(2, timeout=WAIT_S)
    errors: list[BaseException] = []

    def write(db: Database, writer: int) -> None:
        try:
            start.wait()
            for n in range(per_writer):
                project_id = _project_id(db, f"w{writer}-{n}")
                with db.session() as s:
                    s.add(_machine(project_id, name=f"w{writer}-m{n}", vmid=1000 * (writer + 1) + n))
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(db, i)) for i, db in enumerate(sqlite_pair)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 2)

    assert errors == []
    assert _count(sqlite_pair[0], Project) == 2 * per_writer
    assert _count(sqlite_pair[1], Machine) == 2 * per_writer


def test_sqlite_writer_waits_for_a_held_write_lock(sqlite_pair: tuple[Database, Database]) -> None:
    """The first writer holds its transaction open until the second one is writing; both commit."""
    holder, waiter = sqlite_pair
    holding, waiter_writing = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    @event.listens_for(waiter.engine, "before_cursor_execute")
    def announce(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # With BEGIN IMMEDIATE the second writer queues for the lock at BEGIN, before its INSERT.
        if statement.startswith(("BEGIN IMMEDIATE", "INSERT INTO projects")):
            waiter_writing.set()

    def hold() -> None:
        try:
            with holder.session() as s:
                s.add(Project(name="first"))
                s.flush()  # takes SQLite's single write lock
                holding.set()
                assert waiter_writing.wait(WAIT_S), "the second writer never started"
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(WAIT_S)
        with waiter.session() as s:
            s.add(Project(name="second"))
    finally:
        thread.join(WAIT_S)

    assert errors == []
    assert _names(waiter) == ["first", "second"]
