"""``autovibe network ...``: isolation profiles applied through the PVE firewall.

``apply`` puts a machine on its profile's bridge with the firewall on, its policies, the IP sets its
host names resolve to and autovibe's rules on top (the user's own rules are left alone). ``check``
reads the live state back and lists every difference (exit 1 when any; ``--fix`` re-applies).
``refresh`` re-resolves host names and updates the IP sets (``hub tick`` does it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag

if TYPE_CHECKING:
    from autovibe.network.service import ApplyReport, CheckReport, RefreshReport
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

RefArg = Annotated[str, typer.Argument(metavar="MACHINE", help="The machine's name or vmid.")]


@app.callback()
def network(ctx: typer.Context) -> None:
    """Network isolation profiles (egress allowlists) through the PVE firewall."""
    show_help_without_subcommand(ctx)


@app.command("profiles")
def profiles_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """The network profiles: seeds and the ones in the config file ([network.profiles])."""
    from autovibe.composition import network_context

    settings = load_cli_settings(ctx)
    if settings.hub_url:  # the hub's profiles (its seeds and its configuration's)
        from autovibe.cli import remote_usage

        found = remote_usage.network_profiles(settings)
    else:
        found = network_context(settings).profiles
    if json_output:
        render.emit_json(
            {**json_envelope(settings), "profiles": [p.model_dump(mode="json") for p in found.values()]}
        )
        return
    render.table(
        render.Table(
            title=f"Network profiles ({len(found)})",
            columns=(
                render.Column("name"),
                render.Column("bridge"),
                render.Column("policy in/out"),
                render.Column("guard"),
                render.Column("dns"),
                render.Column("allow"),
            ),
            rows=tuple(
                (
                    p.name,
                    p.bridge + (f" (VLAN {p.vlan})" if p.vlan else ""),
                    f"{p.policy_in}/{p.policy_out}",
                    "yes" if p.isolating else "no",
                    ", ".join(p.dns) or "-",
                    ", ".join(p.allow) or "-",
                )
                for p in found.values()
            ),
        )
    )


@app.command()
def apply(
    ctx: typer.Context,
    machine: RefArg,
    profile: Annotated[str, typer.Argument(help="The network profile, e.g. api_access.")],
    approval: Annotated[
        str | None, typer.Option(help="Run an action the gate held, once another identity approved it.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Apply a network profile to a machine (idempotent: running it again changes nothing)."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_usage

        report = remote_usage.apply_profile(settings, machine, profile, approval)
    else:
        report = run(_apply(settings, machine, profile, approval))
    if json_output:
        render.emit_json({**json_envelope(settings), **_applied(report)})
        return
    render.line(f"network profile '{report.profile}' on '{report.machine}' (VM {report.vmid})")
    for change in report.changes or ("already as the profile wants: nothing changed",):
        render.line(f"  {change}")
    for warning in report.warnings:
        render.note(f"warning: {warning}")


def _applied(report: ApplyReport) -> dict[str, object]:
    return {
        "machine": report.machine,
        "vmid": report.vmid,
        "profile": report.profile,
        "changes": list(report.changes),
        "warnings": list(report.warnings),
    }


async def _apply(settings: Settings, machine: str, profile: str, approval: str | None) -> ApplyReport:
    from autovibe.composition import network_context, open_machines
    from autovibe.network import service

    ctx = network_context(settings)
    async with open_machines(settings) as deps:
        return await service.apply(deps, ctx, machine, profile, approval=approval)


@app.command()
def check(
    ctx: typer.Context,
    machine: Annotated[str | None, typer.Argument(metavar="[MACHINE]", help="Only this machine.")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's machines.")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Re-apply the profile where anything differs.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Compare each machine's live network and firewall with its profile. Exit 1 when anything differs
    (after --fix: when anything still differs)."""
    from autovibe.composition import describe_target

    if machine is not None and project is not None:
        raise BadInput("give a MACHINE or --project, not both")
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if settings.hub_url:
        from autovibe.cli import remote_usage

        reports, fixed = remote_usage.check_network(settings, machine, project, fix=fix)
    else:
        reports, fixed = run(_check(settings, machine, project, fix=fix))
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "machines": [
                    {
                        "machine": r.machine,
                        "vmid": r.vmid,
                        "profile": r.profile,
                        "differences": [{"kind": d.kind, "detail": d.detail} for d in r.differences],
                        "warnings": list(r.warnings),
                        "fixed": r.machine in fixed,
                    }
                    for r in reports
                ],
            }
        )
    else:
        for report in reports:
            show_check(report, fixed=report.machine in fixed)
    if any(r.differences for r in reports):
        raise typer.Exit(1)


def show_check(report: CheckReport, *, fixed: bool) -> None:
    if fixed:
        remain = len(report.differences)
        state = "fixed: re-applied" + (f", {remain} difference(s) remain" if remain else "")
    else:
        state = f"{len(report.differences)} difference(s)" if report.differences else "ok"
    render.line(f"{report.machine} (VM {report.vmid}), profile {report.profile or '-'}: {state}")
    for difference in report.differences:
        render.line(f"  {difference.kind}: {difference.detail}")
    for warning in report.warnings:
        render.line(f"  note: {warning}")


async def _check(
    settings: Settings, machine: str | None, project: str | None, *, fix: bool
) -> tuple[list[CheckReport], set[str]]:
    from autovibe.composition import network_context, open_machines
    from autovibe.machines import projects
    from autovibe.machines import service as machines
    from autovibe.network import service

    ctx = network_context(settings)
    async with open_machines(settings) as deps:
        if machine is not None:
            names = [(await machines.show(deps, machine)).name]
        else:
            if project is not None:
                projects.show(db=deps.db, name=project)
            names = [m.name for m in await machines.list_machines(deps, project=project) if not m.missing]
        reports, fixed = [], set()
        for name in names:
            report = await service.check(deps, ctx, name)
            if fix and report.differences and report.profile is not None:
                await service.apply(deps, ctx, name, report.profile)
                fixed.add(name)
                report = await service.check(deps, ctx, name)
            reports.append(report)
        return reports, fixed


@app.command()
def refresh(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Re-resolve the host names of the profiles in use and update their IP sets (new addresses are
    added before old ones are removed; a name that does not resolve keeps its old addresses)."""
    settings = load_cli_settings(ctx)
    if settings.hub_url:
        from autovibe.cli import remote_usage

        report = remote_usage.refresh_network(settings)
    else:
        report = run(_refresh(settings))
    if json_output:
        render.emit_json(
            {**json_envelope(settings), "changes": list(report.changes), "failures": list(report.failures)}
        )
        return
    for change in report.changes or ("every IP set is up to date",):
        render.line(change)
    for failure in report.failures:
        render.note(f"warning: {failure}")


async def _refresh(settings: Settings) -> RefreshReport:
    from autovibe.composition import network_context, open_machines
    from autovibe.network import service

    ctx = network_context(settings)
    async with open_machines(settings) as deps:
        return await service.refresh(deps, ctx)
