"""Migrations, on SQLite and PostgreSQL: ``Database.open`` builds exactly the schema the ORM declares."""

from __future__ import annotations

from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, select

from autovibe.store.db import Database, head_revision
from autovibe.store.tables import Base, HubJob, Project

TABLES = {
    "projects", "machines", "operations", "operation_steps",
    "retention_policies", "checkpoint_marks", "checkpoint_schedules",
    "usage_series", "usage_samples", "usage_hourly", "machine_limits", "limit_violations", "project_quotas",
    "project_enforcement", "enforcement_events",
    "users", "api_tokens", "role_bindings", "approvals", "audit_log", "secrets",
    "hub_jobs", "hub_job_events", "hub_replicas",
}  # fmt: skip
WRITES = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}


def _head() -> str:
    script = ScriptDirectory(str(resources.files("autovibe.store") / "migrations"))
    head = script.get_current_head()
    assert head is not None
    return head


def _revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _diff(db: Database, metadata: sa.MetaData) -> list[Any]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_open_migrates_an_empty_database_to_head(database_url: str) -> None:
    bare = Database.open(database_url, migrate=False)
    try:
        assert sa.inspect(bare.engine).get_table_names() == []
        assert _revision(bare) is None
    finally:
        bare.dispose()

    db = Database.open(database_url)
    try:
        assert set(sa.inspect(db.engine).get_table_names()) == TABLES | {"alembic_version"}
        assert _revision(db) == _head()
    finally:
        db.dispose()


def test_opening_again_changes_nothing(db: Database) -> None:
    with db.session() as s:
        s.add(Project(name="kept"))
    again = Database.open(db.url, migrate=False)
    statements: list[str] = []

    @event.listens_for(again.engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    try:
        again.upgrade()
        assert [sql for sql in statements if sql.lstrip().split()[0].upper() in WRITES] == []
        assert statements, "the listener saw no statement at all: upgrade() did not look at the version"
        assert _revision(again) == _head()
        with again.session() as s:
            assert s.scalars(select(Project.name)).all() == ["kept"]
    finally:
        again.dispose()


def test_migrated_schema_matches_the_orm_metadata(db: Database) -> None:
    assert _diff(db, Base.metadata) == []


def test_schema_comparison_sees_a_difference(db: Database) -> None:
    """Guards the test above: the comparison is live on this backend (it reports a real mismatch)."""
    changed = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["projects"].append_column(sa.Column("extra", sa.Integer()))
    changed.tables["machines"].c.node.type = sa.String(65)

    kinds = {_kind(entry) for entry in _diff(db, changed)}

    assert kinds == {"add_column", "modify_type"}


def test_foreign_keys_carry_their_on_delete_rules(db: Database) -> None:
    """``compare_metadata`` ignores ON DELETE, so check it against the ORM ourselves."""
    inspector = sa.inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        declared = {
            (tuple(fk.parent.name for fk in c.elements), c.ondelete) for c in table.foreign_key_constraints
        }
        reflected = {
            (tuple(fk["constrained_columns"]), fk["options"].get("ondelete"))
            for fk in inspector.get_foreign_keys(table.name)
        }
        assert reflected == declared, table.name
    assert ((("project_id",), "RESTRICT")) in {
        (tuple(fk["constrained_columns"]), fk["options"].get("ondelete"))
        for fk in inspector.get_foreign_keys("machines")
    }


def _kind(entry: Any) -> str:
    # compare_metadata yields tuples ("add_column", ...) or, for column modifications, lists of them.
    first = entry[0] if isinstance(entry, list) else entry
    return str(first[0])


def test_the_fast_head_check_agrees_with_alembic(database_url: str) -> None:
    assert head_revision() == _head()
    db = Database.open(database_url, migrate=False)
    try:
        assert not db.at_head()  # an empty database
        db.upgrade(_previous(_head()))
        assert not db.at_head()  # one revision behind: open() must still migrate it
    finally:
        db.dispose()
    opened = Database.open(database_url)
    try:
        assert opened.at_head()
        assert _revision(opened) == _head()
    finally:
        opened.dispose()


def _previous(revision: str) -> str:
    script = ScriptDirectory(str(resources.files("autovibe.store") / "migrations"))
    down = script.get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def test_a_store_of_the_release_before_job_cancel_gains_its_columns_and_keeps_its_jobs(
    database_url: str,
) -> None:
    """A hub store made by the release that shipped ``20261123_hub`` (no cancel columns) is brought up
    to date by ``open``, with its job rows intact."""
    old = Database.open(database_url, migrate=False)
    try:
        old.upgrade("20261123_hub")
        with old.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO hub_jobs (id, kind, status, params, actor, created_at)"
                    " VALUES ('j1', 'machine.deploy', 'succeeded', '{}', 'alice', '2026-11-23 10:00:00')"
                )
            )
        columns = {c["name"] for c in sa.inspect(old.engine).get_columns("hub_jobs")}
        assert "cancel_requested_at" not in columns
    finally:
        old.dispose()

    db = Database.open(database_url)
    try:
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("hub_jobs")}
        assert {"cancel_requested_at", "cancel_requested_by"} <= columns
        with db.session() as session:
            job = session.get(HubJob, "j1")
            assert job is not None and job.actor == "alice" and job.cancel_requested_at is None
    finally:
        db.dispose()
