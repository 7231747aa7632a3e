"""``autovibe machine ...``: deploy machines (one or a fleet), list, show, power, delete, leases.

Machines are addressed by name or vmid. Bad input to ``create`` (unknown profile, project or node,
malformed sizes or names) is refused with exit code 2 and one stderr line before anything is created.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import remote, render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag, LabelOption, parse_labels, refuse

if TYPE_CHECKING:
    from autovibe.machines.models import MachineRead
    from autovibe.machines.service import PowerAction
    from autovibe.settings import Settings

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="The machine's name or vmid.")]


@app.callback()
def machine(ctx: typer.Context) -> None:
    """Machines: VMs autovibe deploys from profiles and tracks per project."""
    show_help_without_subcommand(ctx)


@app.command()
def create(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="Profile to deploy (claude_code, hub, or your own).")],
    project: Annotated[str, typer.Option(help="Project that owns the machine(s).")],
    name: Annotated[
        str | None, typer.Option(help="Machine name [default: the profile's, e.g. claude-code].")
    ] = None,
    count: Annotated[int, typer.Option(help="Machines to deploy, named NAME-1..NAME-K.")] = 1,
    node: Annotated[str | None, typer.Option(help="PVE node [default: the least loaded].")] = None,
    cores: Annotated[int | None, typer.Option(help="CPU cores [default: the profile's].")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory, e.g. 4G or 4096M.")] = None,
    disk: Annotated[str | None, typer.Option(help="Disk size in GiB (or 40G); can only grow.")] = None,
    linked: Annotated[
        bool, typer.Option("--linked", help="Linked clone (fast, tied to the template).")
    ] = False,
    no_start: Annotated[bool, typer.Option("--no-start", help="Leave the machine(s) stopped.")] = False,
    ttl: Annotated[
        str | None, typer.Option(help="Lease, e.g. 8h or 2d; `hub tick` deletes it after.")
    ] = None,
    label: LabelOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Deploy machines from a profile, concurrently; each ends running and recorded, or undone.

    Ctrl-C once stops starting new machines (those in flight finish); twice undoes those in flight.
    Exit code 0 when all are deployed, 1 when any failed, 130 when stopped by Ctrl-C.
    """
    from autovibe.cli.fleet_progress import REQUEST_FLAGS, deploy_fleet
    from autovibe.composition import describe_target, profiles
    from autovibe.machines.errors import InvalidMachineRequest, ProfileNotFound
    from autovibe.machines.models import MachineCreate, parse_request, resolved_spec
    from autovibe.machines.profiles import get_profile

    settings = load_cli_settings(ctx)
    data: dict[str, Any] = {
        "name": profile.replace("_", "-") if name is None else name,
        "profile": profile,
        "project": project,
        "count": count,
        "start": not no_start,
        "labels": parse_labels(label),
    }
    optional = {"node": node, "cores": cores, "memory_mib": memory, "disk_gib": disk, "ttl": ttl}
    data.update({key: value for key, value in optional.items() if value is not None})
    if linked:
        data["full_clone"] = False
    catalog = {} if settings.hub_url else profiles(settings)  # a hub checks against its own profiles
    try:
        request = parse_request(MachineCreate, data)
        if not settings.hub_url:
            resolved_spec(request, get_profile(catalog, request.profile))
    except (InvalidMachineRequest, ProfileNotFound) as exc:
        raise refuse(exc, REQUEST_FLAGS) from None
    if not json_output:
        render.header(describe_target(settings))
    raise typer.Exit(deploy_fleet(settings, request, catalog, json_output=json_output))


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's machines.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """The machines autovibe tracks, with their live PVE status (one cluster read, whatever the count)."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    machines = remote.list_machines(settings, project) if settings.hub_url else run(_list(settings, project))
    if json_output:
        render.emit_json(
            {**json_envelope(settings), "machines": [m.model_dump(mode="json") for m in machines]}
        )
        return
    render.table(machines_table(machines))


async def _list(settings: Settings, project: str | None) -> list[MachineRead]:
    from autovibe.composition import open_machines
    from autovibe.machines import projects, service

    async with open_machines(settings) as deps:
        if project is not None:
            projects.show(db=deps.db, name=project)  # an unknown project is an error, not an empty list
        return await service.list_machines(deps, project=project)


def machines_table(machines: list[MachineRead], *, title: str = "Machines") -> render.Table:
    """Machines as a table (also used by the demo)."""
    now = datetime.now(UTC)
    return render.Table(
        title=f"{title} ({len(machines)})",
        columns=(
            render.Column("name"),
            render.Column("vmid", "right"),
            render.Column("node"),
            render.Column("project"),
            render.Column("profile"),
            render.Column("status"),
            render.Column("lease", "right"),
            render.Column("labels"),
        ),
        rows=tuple(
            (
                m.name,
                str(m.vmid),
                m.node,
                m.project,
                m.profile,
                m.status,
                _lease(m.expires_at, now),
                ",".join(f"{k}={v}" for k, v in sorted(m.labels.items())),
            )
            for m in machines
        ),
    )


def _lease(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "-"
    left = (expires_at - now).total_seconds()
    return f"{render.human_duration(left)} left" if left >= 1 else "expired"


@app.command()
def show(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """One machine: where it runs, its status, project, profile, labels, lease and lineage."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    view = remote.show_machine(settings, ref) if settings.hub_url else run(_show(settings, ref))
    if json_output:
        render.emit_json({**json_envelope(settings), "machine": view.model_dump(mode="json")})
        return
    show_machine(view)


async def _show(settings: Settings, ref: str) -> MachineRead:
    from autovibe.composition import open_machines
    from autovibe.machines import service

    async with open_machines(settings) as deps:
        return await service.show(deps, ref)


def show_machine(view: MachineRead) -> None:
    """A machine as ``key  value`` lines."""
    lease = (
        "none" if view.expires_at is None else f"{_time(view.expires_at)} ({_lease(view.expires_at, _now())})"
    )
    lineage = (
        f"branched from {view.parent_machine} at {view.parent_checkpoint}" if view.parent_machine else "-"
    )
    for key, value in (
        ("machine", view.name),
        ("vmid", str(view.vmid)),
        ("node", view.node),
        ("status", view.status),
        ("project", view.project),
        ("profile", view.profile),
        ("labels", ",".join(f"{k}={v}" for k, v in sorted(view.labels.items())) or "-"),
        ("created", f"{_time(view.created_at)} by {view.created_by}"),
        ("lease", lease),
        ("lineage", lineage),
    ):
        render.line(f"{key:<10} {value}")


def _now() -> datetime:
    return datetime.now(UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---- power -----------------------------------------------------------------------------------------
def _power(ctx: typer.Context, ref: str, action: PowerAction, json_output: bool) -> None:
    from autovibe.composition import describe_target, open_machines
    from autovibe.machines import service

    settings = load_cli_settings(ctx)

    async def local() -> MachineRead:
        async with open_machines(settings) as deps:
            return await service.power(deps, ref, action)

    def act() -> MachineRead:
        return remote.power(settings, ref, action) if settings.hub_url else run(local())

    if json_output:
        render.emit_json({**json_envelope(settings), "machine": act().model_dump(mode="json")})
        return
    render.header(describe_target(settings))
    with render.progress(f"{action} {ref}"):
        view = act()
    render.line(f"machine '{view.name}' (VM {view.vmid} on {view.node}) is {view.status}")


@app.command()
def start(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """Start a machine and wait until PVE says it runs."""
    _power(ctx, ref, "start", json_output)


@app.command()
def stop(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """Stop a machine at once (power off, like pulling the plug); see `shutdown` for a clean stop."""
    _power(ctx, ref, "stop", json_output)


@app.command()
def shutdown(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """Ask the guest OS to shut down cleanly (ACPI) and wait for it."""
    _power(ctx, ref, "shutdown", json_output)


@app.command()
def reboot(ctx: typer.Context, ref: RefArg, json_output: JsonFlag = False) -> None:
    """Reboot a running machine through its guest OS."""
    _power(ctx, ref, "reboot", json_output)


# ---- delete and leases -----------------------------------------------------------------------------
@app.command()
def delete(
    ctx: typer.Context,
    ref: RefArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    approval: Annotated[
        str | None, typer.Option(help="Run an action the gate held, once another identity approved it.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Stop and delete a machine with its disks, then forget it (journaled: `ops resume` finishes it).

    Asks for confirmation on a terminal; elsewhere --yes is required.
    """
    from autovibe.composition import LOCAL_ACTOR, describe_target, open_machines
    from autovibe.machines import service

    if not yes and not sys.stdin.isatty():
        raise BadInput(f"refusing to delete '{ref}' without --yes: nobody is at a terminal to confirm")
    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    if not yes:
        view = remote.show_machine(settings, ref) if settings.hub_url else run(_show(settings, ref))
        question = (
            f"Delete machine '{view.name}' (VM {view.vmid} on {view.node}, project {view.project}) "
            "and its disks?"
        )
        if not typer.confirm(question, default=False, err=True):
            render.line("nothing deleted")
            raise typer.Exit(1)

    async def remove() -> remote.Deleted:
        async with open_machines(settings) as deps:
            record = await service.delete(deps, ref, actor=LOCAL_ACTOR, approval=approval)
        return remote.Deleted(record.params["name"], record.params["vmid"], record.id)

    gone = remote.delete_machine(settings, ref, approval) if settings.hub_url else run(remove())
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "deleted": {"name": gone.name, "vmid": gone.vmid, "operation_id": gone.operation_id},
            }
        )
        return
    render.line(f"deleted machine '{gone.name}' (VM {gone.vmid}); operation {gone.operation_id[:8]}")


@app.command()
def lease(
    ctx: typer.Context,
    ref: RefArg,
    extend: Annotated[str, typer.Option(help="How much longer, e.g. 4h or 1d.")],
    json_output: JsonFlag = False,
) -> None:
    """Extend a machine's lease (from now if it had none or it has run out)."""
    from autovibe.composition import describe_target, open_machines
    from autovibe.machines import service
    from autovibe.machines.models import parse_ttl

    try:
        ttl = parse_ttl(extend)
    except ValueError as exc:
        raise BadInput(f"--extend: {exc}") from None
    settings = load_cli_settings(ctx)

    async def extend_lease() -> tuple[str, datetime]:
        async with open_machines(settings) as deps:
            return service.find(deps, ref).name, service.extend_lease(deps, ref, ttl)

    name, expires_at = remote.extend_lease(settings, ref, ttl) if settings.hub_url else run(extend_lease())
    if json_output:
        render.emit_json({**json_envelope(settings), "machine": name, "expires_at": expires_at})
        return
    render.header(describe_target(settings))
    render.line(f"the lease of '{name}' now ends {_time(expires_at)} ({_lease(expires_at, _now())})")
