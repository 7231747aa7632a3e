"""Project use cases against a real SQLite store: create, list, show, delete (refused while not empty)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autovibe.machines import projects
from autovibe.machines.errors import InvalidMachineRequest, ProjectNotEmpty, ProjectNotFound
from autovibe.machines.models import ProjectCreate, parse_request
from autovibe.store import repositories as repo
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Machine


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    yield database
    database.dispose()


def new(db: Database, name: str, **fields: object) -> None:
    projects.create(db=db, request=parse_request(ProjectCreate, {"name": name, **fields}))


def add_machine(db: Database, project: str, name: str, vmid: int) -> None:
    with db.session() as session:
        owner = repo.project_by_name(session, project)
        assert owner is not None
        session.add(
            Machine(
                name=name, vmid=vmid, node="pve1", project_id=owner.id, profile="claude_code", created_by="t"
            )
        )


def test_a_created_project_is_listed_and_shown_with_its_machines(db: Database) -> None:
    created = projects.create(
        db=db,
        request=parse_request(
            ProjectCreate, {"name": "alpha", "description": "agents", "labels": {"critical": "yes"}}
        ),
    )
    assert (created.name, created.description, created.labels) == ("alpha", "agents", {"critical": "true"})
    assert created.created_at is not None and created.created_at.utcoffset() is not None
    new(db, "beta")
    add_machine(db, "alpha", "b-agent", 101)
    add_machine(db, "alpha", "a-agent", 102)

    listed = projects.list_projects(db=db)
    assert [(view.project.name, view.machines) for view in listed] == [
        ("alpha", ("a-agent", "b-agent")),
        ("beta", ()),
    ]
    shown = projects.show(db=db, name="alpha")
    assert shown.machines == ("a-agent", "b-agent")
    assert shown.as_dict()["labels"] == {"critical": "true"} and shown.as_dict()["machines"] == [
        "a-agent",
        "b-agent",
    ]


def test_a_second_project_with_the_same_name_is_refused(db: Database) -> None:
    new(db, "alpha", description="first")
    with pytest.raises(projects.ProjectExists, match="already exists"):
        new(db, "alpha", description="second")
    assert projects.show(db=db, name="alpha").project.description == "first"


def test_a_project_that_owns_machines_cannot_be_deleted(db: Database) -> None:
    new(db, "alpha")
    add_machine(db, "alpha", "agent", 101)
    with pytest.raises(ProjectNotEmpty, match=r"still owns 1 machine\(s\): agent"):
        projects.delete(db=db, name="alpha")
    assert projects.show(db=db, name="alpha").machines == ("agent",)

    with db.session() as session:
        row = repo.machine_by_name(session, "agent")
        assert row is not None
        session.delete(row)
    assert projects.delete(db=db, name="alpha").name == "alpha"
    assert projects.list_projects(db=db) == []


def test_unknown_projects_are_not_found(db: Database) -> None:
    for call in (projects.show, projects.delete):
        with pytest.raises(ProjectNotFound, match="no project 'ghost'"):
            call(db=db, name="ghost")


@pytest.mark.parametrize("name", ["Alpha", "-alpha", "al pha", "a" * 64, ""])
def test_a_malformed_name_is_refused_before_the_store(db: Database, name: str) -> None:
    with pytest.raises(InvalidMachineRequest, match=r"^name: "):
        new(db, name)
    assert projects.list_projects(db=db) == []
