"""``autovibe project ...``: the tenants that own machines (create, list, show, delete).

Also home of the small input helpers the machine commands share: ``--label KEY=VALUE`` parsing and
:func:`refuse`, which turns a request error into the single stderr line bad input gets (exit code 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from autovibe.cli import remote, render
from autovibe.cli.commands import json_envelope, load_cli_settings, show_help_without_subcommand
from autovibe.errors import AutovibeError, AutovibeInvalid

if TYPE_CHECKING:
    from autovibe.machines.projects import ProjectView
    from autovibe.settings import Settings
    from autovibe.store.db import Database

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of tables.")]
LabelOption = Annotated[
    list[str] | None, typer.Option("--label", metavar="KEY=VALUE", help="A label (repeatable).")
]


class BadInput(AutovibeInvalid):
    """Input the command refuses before doing anything: exit code 2, one line on stderr, no hint line."""


def refuse(exc: AutovibeError, flags: Mapping[str, str] | None = None) -> BadInput:
    """One line for ``exc``: its message with the field renamed to the flag the user typed
    (``memory_mib: ...`` -> ``--memory: ...``), and its hint folded in when it says something specific.

    Invalid-kind errors drop their hint (it only says "fix the named field"); not-found errors keep
    theirs (``did you mean 'claude_code'?``, ``create it: autovibe project create alpha``).
    """
    message = exc.message
    for field, flag in (flags or {}).items():
        if message.startswith(f"{field}:"):
            message = f"{flag}:{message.removeprefix(f'{field}:')}"
            break
    if exc.hint and not isinstance(exc, AutovibeInvalid):
        message = f"{message} ({exc.hint})"
    return BadInput(message)


def parse_labels(values: Sequence[str] | None) -> dict[str, str]:
    """``["critical=true", "team=ml"]`` -> ``{"critical": "true", "team": "ml"}``; the values are
    checked later by the request model. Raises :class:`BadInput` for an entry without ``=``."""
    labels: dict[str, str] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--label: {value!r} is not KEY=VALUE (e.g. --label critical=true)")
        labels[key.strip()] = text.strip()
    return labels


@app.callback()
def project(ctx: typer.Context) -> None:
    """Projects (tenants): every machine belongs to exactly one."""
    show_help_without_subcommand(ctx)


T = TypeVar("T")


def _call(
    ctx: typer.Context,
    *,
    json_output: bool,
    local: Callable[[Database], T],
    hub: Callable[[Settings], T],
) -> tuple[Settings, T]:
    """The command's settings and the answer of ``local`` on the store (disposed of afterwards), or of
    ``hub`` when ``--hub`` is set; the target header is printed first for humans."""
    from autovibe.composition import describe_target, store

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        return settings, hub(settings)
    with store(settings) as db:
        return settings, local(db)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '_' and '-'.")],
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    label: LabelOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a project, the tenant that owns machines."""
    from autovibe.machines import projects
    from autovibe.machines.errors import InvalidMachineRequest
    from autovibe.machines.models import ProjectCreate, parse_request

    data = {"name": name, "description": description, "labels": parse_labels(label)}
    try:
        request = parse_request(ProjectCreate, data)
    except InvalidMachineRequest as exc:
        raise refuse(exc, {"labels": "--label", "description": "--description"}) from None
    settings, created = _call(
        ctx,
        json_output=json_output,
        local=lambda db: projects.create(db=db, request=request),
        hub=lambda settings: remote.create_project(settings, request).project,
    )
    if json_output:
        render.emit_json({**json_envelope(settings), "project": created.model_dump(mode="json")})
        return
    render.line(f"created project '{created.name}'")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every project, with how many machines it owns."""
    from autovibe.machines import projects

    settings, views = _call(
        ctx,
        json_output=json_output,
        local=lambda db: projects.list_projects(db=db),
        hub=remote.list_projects,
    )
    if json_output:
        render.emit_json({**json_envelope(settings), "projects": [view.as_dict() for view in views]})
        return
    render.table(projects_table(views))


def projects_table(views: Sequence[ProjectView]) -> render.Table:
    """The project list as a table (also used by the demo)."""
    return render.Table(
        title=f"Projects ({len(views)})",
        columns=(
            render.Column("name"),
            render.Column("machines", "right"),
            render.Column("labels"),
            render.Column("description"),
        ),
        rows=tuple(
            (
                view.project.name,
                str(len(view.machines)),
                _labels(view.project.labels),
                view.project.description,
            )
            for view in views
        ),
    )


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project's name.")],
    json_output: JsonFlag = False,
) -> None:
    """A project: description, labels, creation time and its machines."""
    from autovibe.machines import projects

    settings, view = _call(
        ctx,
        json_output=json_output,
        local=lambda db: projects.show(db=db, name=name),
        hub=lambda settings: remote.show_project(settings, name),
    )
    if json_output:
        render.emit_json({**json_envelope(settings), "project": view.as_dict()})
        return
    created = view.project.created_at
    for key, value in (
        ("project", view.project.name),
        ("description", view.project.description or "-"),
        ("labels", _labels(view.project.labels) or "-"),
        ("created", created.strftime("%Y-%m-%d %H:%M:%S UTC") if created else "-"),
        ("machines", ", ".join(view.machines) or "none"),
    ):
        render.line(f"{key:<12} {value}")


@app.command()
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project's name.")],
    json_output: JsonFlag = False,
) -> None:
    """Delete an empty project (one that still owns machines is refused)."""
    from autovibe.machines import projects

    settings, deleted = _call(
        ctx,
        json_output=json_output,
        local=lambda db: projects.delete(db=db, name=name),
        hub=lambda settings: remote.delete_project(settings, name).project,
    )
    if json_output:
        render.emit_json({**json_envelope(settings), "deleted": deleted.name})
        return
    render.line(f"deleted project '{deleted.name}'")


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
