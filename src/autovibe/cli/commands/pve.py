"""``autovibe pve role``: the least-privilege PVE role autovibe needs, printed or set up.

The privileges come from :mod:`autovibe.cluster.privileges` (derived from PVE's own permission rules for
the calls autovibe makes). ``--print`` shows them per ACL path with the ``pveum`` commands an admin runs;
``--apply`` does the same through the API with the configured (admin) credentials and prints the new
token's secret once. The secret never goes to the log.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand

if TYPE_CHECKING:
    from autovibe.cluster.access import AccessApplied
    from autovibe.cluster.privileges import AccessPlan
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

_USERID = re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_ROLE = re.compile(r"^[A-Za-z0-9.\-_]+$")
DEFAULT_TOKENID = "autovibe"  # the token's name, not a secret


@app.callback()
def pve(ctx: typer.Context) -> None:
    """Least-privilege access on PVE: the role, user and API token autovibe should run as."""
    show_help_without_subcommand(ctx)


@app.command()
def role(
    ctx: typer.Context,
    print_plan: Annotated[
        bool, typer.Option("--print", help="Show the role(s), the ACL paths and the pveum commands.")
    ] = False,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Create or update them through the API (needs admin credentials)."),
    ] = False,
    name: Annotated[str, typer.Option("--name", help="Name of the custom role.")] = "AutovibeHub",
    user: Annotated[str, typer.Option("--user", help="The PVE user autovibe runs as.")] = "autovibe@pve",
    tokenid: Annotated[str, typer.Option("--token", help="Name of that user's API token.")] = DEFAULT_TOKENID,
    json_output: Annotated[bool, typer.Option("--json", help="Print stable JSON.")] = False,
) -> None:
    """The custom role holding exactly the privileges autovibe needs, granted on the ACL paths it uses.

    --print shows it with the pveum commands to run on a PVE node. --apply creates (or updates) the
    role, the user, its privilege-separated API token and the ACLs for both through the API, using the
    configured credentials, which must be an administrator's; running it again changes only what
    differs. A new token's secret is printed once: store it then, it cannot be shown again.
    """
    if print_plan == apply:
        raise typer.BadParameter(
            "give exactly one of --print and --apply", param_hint="'--print' / '--apply'"
        )
    _check_names(name, user, tokenid)
    from autovibe.cluster.privileges import access_plan
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    plan = access_plan(name, user, tokenid)
    if not json_output:
        render.header(describe_target(settings))
    if print_plan:
        if json_output:
            render.emit_json({**json_envelope(settings), **plan_json(plan)})
        else:
            show_plan(plan)
        return
    applied = run(_apply(settings, plan))
    if json_output:
        render.emit_json({**json_envelope(settings), **plan_json(plan), **applied_json(applied)})
    else:
        show_applied(applied)


def _check_names(name: str, user: str, token: str) -> None:
    if not _ROLE.match(name) or name.upper().startswith("PVE"):
        raise typer.BadParameter(
            f"role name '{name}': letters, digits, '.', '-', '_', not starting with PVE",
            param_hint="'--name'",
        )
    if not _USERID.match(user):
        raise typer.BadParameter(f"'{user}' is not USER@REALM, e.g. autovibe@pve", param_hint="'--user'")
    if not _NAME.match(token):
        raise typer.BadParameter(
            f"token name '{token}': a letter, then letters, digits, '.', '-', '_'", param_hint="'--token'"
        )


async def _apply(settings: Settings, plan: AccessPlan) -> AccessApplied:
    from autovibe.cluster.access import apply_access
    from autovibe.composition import open_pve

    async with open_pve(settings) as pve_client:
        return await apply_access(pve=pve_client, plan=plan)


# ---- output ----------------------------------------------------------------------------------------


def plan_json(plan: AccessPlan) -> dict[str, Any]:
    return {
        "user": plan.userid,
        "token": plan.token_authid,
        "roles": [{"roleid": r.roleid, "privileges": list(r.privileges)} for r in plan.roles],
        "paths": [
            {
                "path": g.path,
                "propagate": g.propagate,
                "privileges": list(g.privileges),
                "used_for": {priv: list(features) for priv, features in g.used_for.items()},
            }
            for g in plan.grants
        ],
        "acls": [{"path": a.path, "roleid": a.roleid, "propagate": a.propagate} for a in plan.acls],
        "pveum": plan.pveum_commands(),
    }


def applied_json(applied: AccessApplied) -> dict[str, Any]:
    return {
        "changes": list(applied.changes),
        "notes": list(applied.notes),
        "token_created": applied.token_secret is not None,
        "token_value": applied.token_value,
    }


def show_plan(plan: AccessPlan) -> None:
    render.line("autovibe needs these PVE privileges (from PVE 8.4's permission rules for its API calls):")
    render.table(
        render.Table(
            title="Privileges per ACL path",
            columns=(
                render.Column("path"),
                render.Column("propagate"),
                render.Column("privilege"),
                render.Column("used for"),
            ),
            rows=tuple(
                (g.path, "yes" if g.propagate else "no", priv, ", ".join(g.used_for.get(priv, ())))
                for g in plan.grants
                for priv in g.privileges
            ),
        )
    )
    for spec in plan.roles:
        granted = ", ".join(a.path for a in plan.acls if a.roleid == spec.roleid)
        render.line(f"role {spec.roleid} (granted on {granted}): {', '.join(spec.privileges)}")
    render.line(f"user {plan.userid}, API token {plan.token_authid} with privilege separation")
    render.line()
    render.line("As root on any PVE node:")
    for command in plan.pveum_commands():
        render.line(f"  {command}")
    render.line()
    render.line("Or let autovibe do it with admin credentials: autovibe pve role --apply")


def show_applied(applied: AccessApplied) -> None:
    plan = applied.plan
    if applied.changes:
        for change in applied.changes:
            render.line(f"- {change}")
    else:
        render.line(f"nothing to change: roles, user {plan.userid}, token and ACLs are as planned")
    for note in applied.notes:
        render.line(f"note: {note}", style="yellow")
    if applied.token_value is not None:
        render.line()
        render.line("API token (shown once: store it now, PVE cannot show it again):", style="bold")
        render.line(f"  {applied.token_value}")
        render.line(
            "Use it as pve_token in the config file or AUTOVIBE_PVE_TOKEN, then run `autovibe doctor`."
        )
