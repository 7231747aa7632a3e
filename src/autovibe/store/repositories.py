"""Queries the services share. Functions take the session they run in, so callers own transactions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from autovibe.store.tables import Machine, Project


def project_by_name(session: Session, name: str) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name)).one_or_none()


def projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.name)))


def machine_by_name(session: Session, name: str) -> Machine | None:
    return session.scalars(select(Machine).where(Machine.name == name)).one_or_none()


def machine_by_vmid(session: Session, vmid: int) -> Machine | None:
    return session.scalars(select(Machine).where(Machine.vmid == vmid)).one_or_none()


def machine_by_ref(session: Session, ref: str) -> Machine | None:
    """The machine named ``ref``, or with vmid ``ref`` when it is all digits (how users address them)."""
    # ASCII digits only ("²".isdigit() is true), and no longer than a vmid can be (PVE: up to 999999999).
    if ref.isascii() and ref.isdigit():
        return machine_by_vmid(session, int(ref)) if len(ref) <= 9 else None
    return machine_by_name(session, ref)


def machine_by_operation(session: Session, operation_id: str) -> Machine | None:
    return session.scalars(select(Machine).where(Machine.operation_id == operation_id)).one_or_none()


def machines(session: Session, *, project: str | None = None) -> list[Machine]:
    # The join also fills each machine's ``project`` (callers read its name): one query, not one per row.
    query = select(Machine).join(Project).options(contains_eager(Machine.project)).order_by(Machine.name)
    if project is not None:
        query = query.where(Project.name == project)
    return list(session.scalars(query))
