"""Projects: the tenants that own machines. List and show (reads), create and delete (store only).

A project is visible to whoever may read it (``project.read`` in it, or globally); creating and deleting
one needs a global admin. A project that still owns machines is not deleted (409, naming them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field

from autovibe.api.deps import Caller, HubDep
from autovibe.machines import projects
from autovibe.machines.models import ProjectCreate, ProjectRead
from autovibe.security import rbac

router = APIRouter(prefix="/projects", tags=["projects"])

ProjectName = Annotated[
    str, Path(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="The project")
]


class ProjectView(ProjectRead):
    """A project and the names of the machines it owns (sorted)."""

    machines: list[str] = Field(default_factory=list)


def _view(view: projects.ProjectView) -> ProjectView:
    return ProjectView(**view.project.model_dump(), machines=list(view.machines))


@router.get("", response_model=list[ProjectView])
def list_projects(hub: HubDep, identity: Caller) -> list[ProjectView]:
    """Every project you may read, by name, with the machines it owns."""
    return [
        _view(view)
        for view in projects.list_projects(db=hub.db)
        if rbac.can(identity, "project.read", view.project.name)
    ]


@router.post("", status_code=201, response_model=ProjectRead)
def create_project(hub: HubDep, identity: Caller, body: ProjectCreate) -> ProjectRead:
    """Create a project (a global admin's action). A taken name is a 409."""
    return projects.create(db=hub.db, request=body, identity=identity, security=hub.base_deps.security)


@router.get("/{name}", response_model=ProjectView)
def show_project(hub: HubDep, identity: Caller, name: ProjectName) -> ProjectView:
    """One project: description, labels, creation time and the machines it owns."""
    view = projects.show(db=hub.db, name=name)
    rbac.check(identity, "project.read", name)
    return _view(view)


@router.delete("/{name}", response_model=ProjectRead)
def delete_project(hub: HubDep, identity: Caller, name: ProjectName) -> ProjectRead:
    """Delete an empty project and answer with what it was. One that still owns machines is refused
    with a 409 naming them: delete the machines first (usage and quotas are accounted to the project)."""
    return projects.delete(db=hub.db, name=name, identity=identity, security=hub.base_deps.security)
