"""Named retention policies in the store, attached to projects (their default) or to single machines.

A machine's effective policy is its own when it has one, else its project's default, else none (and a
prune leaves its checkpoints alone).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from autovibe.checkpoints.errors import InvalidCheckpointRequest, PolicyInUse, PolicyNotFound
from autovibe.checkpoints.retention import RetentionPolicy
from autovibe.machines.errors import MachineNotFound, ProjectNotFound
from autovibe.machines.models import check_slug
from autovibe.security.gate import Gate
from autovibe.security.identity import LOCAL_ADMIN, Identity
from autovibe.store import repositories as repo
from autovibe.store.db import Database
from autovibe.store.tables import Machine, Project, RetentionPolicyRow


class PolicyRead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    rules: RetentionPolicy
    description: str = ""
    summary: str = ""
    projects: tuple[str, ...] = ()  # projects whose default it is
    machines: tuple[str, ...] = ()  # machines that name it themselves


def build_policy(rules: dict[str, object]) -> RetentionPolicy:
    """A ``RetentionPolicy`` from flag values, or one ``InvalidCheckpointRequest`` line naming the flag."""
    try:
        return RetentionPolicy.model_validate(rules)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "--keep-" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "policy"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidCheckpointRequest(f"{field}: {message}") from None


def _read(session: Session, row: RetentionPolicyRow) -> PolicyRead:
    rules = RetentionPolicy.model_validate(row.rules)
    projects = session.scalars(select(Project.name).where(Project.retention_policy_id == row.id))
    machines = session.scalars(select(Machine.name).where(Machine.retention_policy_id == row.id))
    return PolicyRead(
        name=row.name,
        rules=rules,
        description=row.description,
        summary=rules.describe(),
        projects=tuple(sorted(projects)),
        machines=tuple(sorted(machines)),
    )


def _row(session: Session, name: str) -> RetentionPolicyRow:
    row = session.scalars(select(RetentionPolicyRow).where(RetentionPolicyRow.name == name)).one_or_none()
    if row is None:
        known = ", ".join(session.scalars(select(RetentionPolicyRow.name).order_by(RetentionPolicyRow.name)))
        raise PolicyNotFound(
            f"no retention policy '{name}'",
            hint=f"known policies: {known}" if known else "create one with `autovibe checkpoint policy set`",
        )
    return row


def save(
    db: Database,
    name: str,
    rules: RetentionPolicy,
    *,
    description: str = "",
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> PolicyRead:
    """Create the policy ``name``, or replace its rules (machines using it follow at their next prune)."""
    try:
        check_slug(name)
    except ValueError as exc:
        raise InvalidCheckpointRequest(f"policy name: {exc}") from None
    with (
        (security or Gate(db)).guard_sync(
            identity, "policy.set", target=f"retention policy {name}", params={"rules": rules.flags()}
        ),
        db.session() as session,
    ):
        row = session.scalars(select(RetentionPolicyRow).where(RetentionPolicyRow.name == name)).one_or_none()
        if row is None:
            row = RetentionPolicyRow(name=name)
            session.add(row)
        row.rules = rules.model_dump(mode="json")
        row.description = description
        session.flush()
        return _read(session, row)


def get(db: Database, name: str) -> PolicyRead:
    with db.session() as session:
        return _read(session, _row(session, name))


def list_all(db: Database) -> list[PolicyRead]:
    with db.session() as session:
        rows = session.scalars(select(RetentionPolicyRow).order_by(RetentionPolicyRow.name))
        return [_read(session, row) for row in rows]


def delete(
    db: Database, name: str, *, identity: Identity = LOCAL_ADMIN, security: Gate | None = None
) -> None:
    get(db, name)  # not found: say so before the gate records anything
    with (
        (security or Gate(db)).guard_sync(identity, "policy.delete", target=f"retention policy {name}"),
        db.session() as session,
    ):
        read = _read(session, row := _row(session, name))
        users = [f"project {p}" for p in read.projects] + [f"machine {m}" for m in read.machines]
        if users:
            raise PolicyInUse(
                f"retention policy '{name}' is in use by {', '.join(users)}",
                hint="detach it first with `autovibe checkpoint policy detach`",
            )
        session.delete(row)


def _target(session: Session, *, project: str | None, machine: str | None) -> Project | Machine:
    if (project is None) == (machine is None):
        raise InvalidCheckpointRequest("give exactly one of --project or --machine")
    if project is not None:
        found_project = repo.project_by_name(session, project)
        if found_project is None:
            raise ProjectNotFound(f"no project '{project}'")
        return found_project
    assert machine is not None
    found = repo.machine_by_ref(session, machine)
    if found is None:
        raise MachineNotFound(f"no machine '{machine}'", hint="list machines with `autovibe machine list`")
    return found


def attach(
    db: Database,
    name: str,
    *,
    project: str | None = None,
    machine: str | None = None,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> PolicyRead:
    """Make ``name`` the project's default policy, or the machine's own."""
    with (security or Gate(db)).guard_sync(
        identity, "policy.attach", target=f"retention policy {name} on {project or machine}",
        project=project or _machine_project(db, machine),
    ), db.session() as session:  # fmt: skip
        row = _row(session, name)
        _target(session, project=project, machine=machine).retention_policy_id = row.id
        session.flush()
        return _read(session, row)


def detach(
    db: Database,
    *,
    project: str | None = None,
    machine: str | None = None,
    identity: Identity = LOCAL_ADMIN,
    security: Gate | None = None,
) -> None:
    with (security or Gate(db)).guard_sync(
        identity, "policy.attach", target=f"retention policy of {project or machine}",
        project=project or _machine_project(db, machine),
    ), db.session() as session:  # fmt: skip
        _target(session, project=project, machine=machine).retention_policy_id = None


def _machine_project(db: Database, machine: str | None) -> str | None:
    if machine is None:
        return None
    with db.session() as session:
        row = repo.machine_by_ref(session, machine)
        return row.project.name if row is not None else None


def effective(session: Session, machine: Machine) -> tuple[str, RetentionPolicy] | None:
    """The machine's own policy, else its project's default; None when neither is set."""
    policy_id = machine.retention_policy_id or machine.project.retention_policy_id
    if policy_id is None:
        return None
    row = session.get_one(RetentionPolicyRow, policy_id)
    return row.name, RetentionPolicy.model_validate(row.rules)
