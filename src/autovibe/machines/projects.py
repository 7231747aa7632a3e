"""Project use cases: create, list, show, delete. Projects live only in the store (PVE has no tenants).

A project owns machines; it can be deleted only once it owns none (:class:`ProjectNotEmpty`), so a
machine never outlives the tenant that accounts for it. Requests are validated by
:class:`~autovibe.machines.models.ProjectCreate` (build it with ``parse_request``) before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from autovibe.machines.errors import ProjectExists, ProjectNotEmpty, ProjectNotFound
from autovibe.machines.models import ProjectCreate, ProjectRead
from autovibe.security.gate import Gate
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.errors import StoreConflict
from autovibe.store.tables import Machine, Project

__all__ = ["ProjectExists", "ProjectView", "create", "delete", "list_projects", "show"]


@dataclass(frozen=True)
class ProjectView:
    """A project and the names of the machines it owns (sorted)."""

    project: ProjectRead
    machines: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the project's fields plus ``machines``."""
        return {**self.project.model_dump(mode="json"), "machines": list(self.machines)}


def _read(row: Project) -> ProjectRead:
    return ProjectRead(
        name=row.name,
        description=row.description,
        labels={str(key): str(value) for key, value in row.labels.items()},
        created_at=row.created_at,
    )


def _not_found(name: str) -> ProjectNotFound:
    return ProjectNotFound(f"no project '{name}'")


def create(
    *, db: Database, request: ProjectCreate, identity: Identity = LOCAL_ADMIN, security: Gate | None = None
) -> ProjectRead:
    """Store a new project. Raises :class:`ProjectExists` when the name is taken (also when another
    process wins a race to create the same name: the unique constraint decides)."""
    with (security or Gate(db)).guard_sync(identity, "project.create", target=f"project {request.name}"):
        return _create(db, request)


def _create(db: Database, request: ProjectCreate) -> ProjectRead:
    taken = ProjectExists(
        f"a project named '{request.name}' already exists",
        hint=f"see it with `autovibe project show {request.name}`, or choose another name",
    )
    try:
        with db.session() as session:
            if repo.project_by_name(session, request.name) is not None:
                raise taken
            row = Project(name=request.name, description=request.description, labels=dict(request.labels))
            session.add(row)
            session.flush()
            return _read(row)
    except StoreConflict as exc:
        raise taken from exc


def list_projects(*, db: Database) -> list[ProjectView]:
    """Every project, by name, with its machines (two queries, whatever the number of projects)."""
    with db.session() as session:
        rows = repo.projects(session)
        owned: dict[int, list[str]] = {row.id: [] for row in rows}
        for project_id, name in session.execute(
            select(Machine.project_id, Machine.name).order_by(Machine.name)
        ):
            owned.setdefault(project_id, []).append(name)
        return [ProjectView(_read(row), tuple(owned[row.id])) for row in rows]


def show(*, db: Database, name: str) -> ProjectView:
    """The project called ``name``; raises :class:`ProjectNotFound` (exit code 4)."""
    with db.session() as session:
        row = repo.project_by_name(session, name)
        if row is None:
            raise _not_found(name)
        return ProjectView(_read(row), tuple(sorted(machine.name for machine in row.machines)))


def delete(
    *, db: Database, name: str, identity: Identity = LOCAL_ADMIN, security: Gate | None = None
) -> ProjectRead:
    """Forget an empty project and return what it was.

    Raises :class:`ProjectNotFound`, or :class:`ProjectNotEmpty` naming the machines it still owns
    (delete them first: a project is what their usage and quotas are accounted to).
    """
    show(db=db, name=name)  # not found: say so before the gate records anything
    with (security or Gate(db)).guard_sync(
        identity, "project.delete", target=f"project {name}", project=name
    ):
        return _delete(db, name)


def _delete(db: Database, name: str) -> ProjectRead:
    with db.session() as session:
        row = repo.project_by_name(session, name)
        if row is None:
            raise _not_found(name)
        machines = sorted(machine.name for machine in row.machines)
        if machines:
            shown = ", ".join(machines[:5]) + (f" and {len(machines) - 5} more" if len(machines) > 5 else "")
            raise ProjectNotEmpty(
                f"project '{name}' still owns {len(machines)} machine(s): {shown}",
                hint=f"delete them first (`autovibe machine list --project {name}`)",
            )
        read = _read(row)
        session.delete(row)
        return read
