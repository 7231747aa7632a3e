"""``autovibe role ...``: bind roles (viewer, operator, admin, auditor) to users, globally or per project.

A project-scoped role counts only for that project's machines, checkpoints, quotas...; a global one
counts everywhere, and is the only kind that allows global actions (users, tokens, roles, secrets,
creating projects). See :mod:`autovibe.security.rbac` for what each role may do.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from autovibe.cli import remote_admin, render
from autovibe.cli.commands import json_envelope, show_help_without_subcommand
from autovibe.cli.commands.project import JsonFlag
from autovibe.cli.commands.user import admin_store, target_settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

UserArg = Annotated[str, typer.Argument(metavar="USER", help="The user's name.")]
RoleArg = Annotated[str, typer.Argument(metavar="ROLE", help="viewer, operator, admin or auditor.")]
ProjectOpt = Annotated[str | None, typer.Option(help="Only in this project; unset = globally.")]


@app.callback()
def role(ctx: typer.Context) -> None:
    """Roles held by users, globally or in one project."""
    show_help_without_subcommand(ctx)


def _where(project: str | None) -> str:
    return f"in project {project}" if project is not None else "globally"


@app.command()
def bind(ctx: typer.Context, user: UserArg, role: RoleArg, project: ProjectOpt = None) -> None:
    """Give USER the ROLE, in one project or globally (binding it again changes nothing)."""
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        bound = remote_admin.bind_role(settings, user, role, project)
    else:
        with admin_store(
            settings,
            "role.bind",
            f"user {user}",
            params={"role": role, "project": project},
            details={"role": role},
        ) as db:
            bound = identity.bind(db, user, role, project)
    render.line(f"user '{bound.user}' is {bound.role} {_where(bound.project)}")


@app.command()
def unbind(ctx: typer.Context, user: UserArg, role: RoleArg, project: ProjectOpt = None) -> None:
    """Take ROLE away from USER (in that project, or the global binding)."""
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=False)
    if settings.hub_url:
        gone = remote_admin.unbind_role(settings, user, role, project)
    else:
        params = {"role": role, "project": project}
        with admin_store(settings, "role.unbind", f"user {user}", params=params) as db:
            gone = identity.unbind(db, user, role, project)
    render.line(f"user '{gone.user}' is no longer {gone.role} {_where(gone.project)}")


@app.command("list")
def list_(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's roles.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Every role binding (or one user's)."""
    from autovibe.composition import store
    from autovibe.security import identity

    settings = target_settings(ctx, json_output=json_output)
    if settings.hub_url:
        found = remote_admin.role_bindings(settings, user)
    else:
        with store(settings) as db:
            found = identity.bindings_of(db, user)
    if json_output:
        render.emit_json({**json_envelope(settings), "bindings": [asdict(b) for b in found]})
        return
    render.table(
        render.Table(
            title=f"Role bindings ({len(found)})",
            columns=(render.Column("user"), render.Column("role"), render.Column("project")),
            rows=tuple((b.user, b.role, b.project or "(global)") for b in found),
        )
    )
