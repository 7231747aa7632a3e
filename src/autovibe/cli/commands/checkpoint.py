"""``autovibe checkpoint ...``: snapshots with RAM as a tree; create, show, restore, branch, delete, pin.

A checkpoint is addressed by its machine (name or vmid) and its name. Bad names are refused with exit
code 2 and one stderr line before anything reaches PVE. Commands that change PVE wait out its locks (a
backup, another snapshot) for up to ``--lock-timeout`` seconds, saying on stderr what they wait for, and
name the journaled operation when they fail. With ``--hub`` each command asks the hub instead (its jobs
followed over Server-Sent Events), with the same output and exit codes. The retention commands (prune,
policy, schedule) come from ``checkpoint_retention``, registered at the end of this module.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from autovibe.cli import remote_checkpoints as hub_calls
from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run, show_help_without_subcommand
from autovibe.cli.commands.project import BadInput, JsonFlag, refuse

if TYPE_CHECKING:
    from autovibe.checkpoints.models import Checkpoint, CheckpointDetail, CheckpointTree
    from autovibe.checkpoints.service import Created
    from autovibe.machines.deploy import MachineDeps
    from autovibe.machines.models import MachineRead
    from autovibe.operations.errors import OperationFailed
    from autovibe.settings import Settings

T = TypeVar("T")

app = typer.Typer(rich_markup_mode=None, invoke_without_command=True, add_completion=False)

DEFAULT_LOCK_TIMEOUT_S = 120.0
HERE = "● you are here"

MachineArg = Annotated[str, typer.Argument(metavar="MACHINE", help="The machine's name or vmid.")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The checkpoint's name.")]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0,
        max=86400,
        metavar="SECONDS",
        help="How long to wait while PVE holds a lock on the VM (a backup, another snapshot).",
    ),
]


@app.callback()
def checkpoint(ctx: typer.Context) -> None:
    """Checkpoints: PVE snapshots of a machine (with its RAM when it runs), kept as a tree."""
    show_help_without_subcommand(ctx)


# ---- plumbing ------------------------------------------------------------------------------------
def _settings(ctx: typer.Context, *, json_output: bool) -> Settings:
    """The command's settings, and the target header for humans."""
    from autovibe.composition import describe_target

    settings = load_cli_settings(ctx)
    if not json_output:
        render.header(describe_target(settings))
    return settings


@asynccontextmanager
async def _deps(settings: Settings, lock_timeout: float | None = None) -> AsyncIterator[MachineDeps]:
    from autovibe.composition import open_machines

    async with open_machines(settings) as deps:
        if lock_timeout is not None:
            wait_for_locks(deps, lock_timeout)
        yield deps


def wait_for_locks(deps: MachineDeps, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for PVE's locks on a VM, with one stderr line per wait."""
    deps.gate.limits = replace(deps.gate.limits, lock_deadline_s=timeout_s)

    def on_wait(what: str, reason: str, pause: float) -> None:
        render.note(
            f"waiting: {_lock_reason(reason, what)}; retrying '{what}' in {pause:.1f} s "
            f"(gives up after {timeout_s:g} s)"
        )

    deps.gate.on_wait = on_wait


def _lock_reason(reason: str, what: str) -> str:
    """PVE's own words (``VM is locked (backup)``, with the vmid from ``what`` put in) out of an error that
    may also name the task and the request; the whole reason, on one line, when they are not there."""
    import re

    found = re.search(r"\b(?:VM|CT) is locked \([^)]*\)|can't lock file '[^']*'", reason)
    if found is None:
        return _one_line(reason)
    vmid = re.search(r"\bVM (\d+)", what)
    words = found.group(0)
    return words.replace("VM is", f"VM {vmid.group(1)} is", 1) if vmid else words


def _read(settings: Settings, call: Callable[[MachineDeps], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _deps(settings) as deps:
            return await call(deps)

    return run(go())


def _change(
    settings: Settings,
    call: Callable[[MachineDeps], Awaitable[T]],
    *,
    lock_timeout: float,
    label: str,
    quiet: bool,
    remote: Callable[[], T] | None = None,
) -> T:
    """Run a mutating service call (``remote`` instead, the same work as a hub job, with ``--hub``),
    with a progress line for humans and the operation named on failure."""

    async def go() -> T:
        async with _deps(settings, lock_timeout) as deps:
            return await call(deps)

    work: Callable[[], T] = remote if settings.hub_url and remote is not None else lambda: run(go())
    if quiet:
        return _named(work)
    with render.progress(label):
        return _named(work)


def _run_operation(work: Coroutine[Any, Any, T]) -> T:
    return _named(lambda: run(work))


def _named(work: Callable[[], T]) -> T:
    """``work()``, with the operation's id put in the message when a journaled operation failed."""
    from autovibe.operations.errors import OperationFailed

    try:
        return work()
    except OperationFailed as exc:
        raise _naming_operation(exc) from exc


def _naming_operation(exc: OperationFailed) -> OperationFailed:
    """The runner's failure with its operation id in the message (and where to read its steps)."""
    from autovibe.operations.errors import OperationFailed

    short = exc.operation_id[:8]
    return OperationFailed(
        f"{exc.message}; operation {short}",
        operation_id=exc.operation_id,
        step=exc.step,
        compensated=exc.compensated,
        hint=exc.hint or f"see its steps: `autovibe ops show {short}`",
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _when(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _check_name(name: str) -> None:
    from autovibe.checkpoints.errors import InvalidCheckpointRequest
    from autovibe.checkpoints.models import check_name

    try:
        check_name(name)
    except InvalidCheckpointRequest as exc:
        raise refuse(exc) from None


# ---- create --------------------------------------------------------------------------------------
@app.command()
def create(
    ctx: typer.Context,
    machine: MachineArg,
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME]",
            help="Letters, digits, '-' and '_', starting with a letter [default: ckpt-YYYYMMDD-HHMMSS, UTC].",
            show_default=False,
        ),
    ] = None,
    ram: Annotated[
        bool | None,
        typer.Option(
            "--ram/--no-ram",
            help="Save the RAM too, so a restore resumes the machine running [default: on when it runs].",
            show_default=False,
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What this checkpoint is for.")] = "",
    pin: Annotated[bool, typer.Option("--pin", help="Pin it: retention never removes it.")] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT_S,
    json_output: JsonFlag = False,
) -> None:
    """Take a checkpoint: a PVE snapshot of the machine's disks and config, and of its RAM when it runs."""
    from autovibe.checkpoints import service
    from autovibe.composition import LOCAL_ACTOR

    if name is not None:
        _check_name(name)
    settings = _settings(ctx, json_output=json_output)

    async def go(deps: MachineDeps) -> tuple[str, Created]:
        owner = (await service.locate(deps, machine)).name  # `machine` may be a vmid
        made = await service.create(
            deps, owner, name, ram=ram, description=description, pin=pin, actor=LOCAL_ACTOR
        )
        return owner, made

    owner, created = _change(
        settings,
        go,
        lock_timeout=lock_timeout,
        label=f"checkpoint '{name}' of {machine}" if name else f"new checkpoint of {machine}",
        quiet=json_output,
        remote=lambda: hub_calls.create(settings, machine, name, ram=ram, description=description, pin=pin),
    )
    taken = created.checkpoint
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "machine": owner,
                "checkpoint": taken.model_dump(mode="json"),
                "operation_id": created.operation_id,
                "ram_skipped": created.ram_skipped,
            }
        )
        return
    saved = "disks, config and RAM: a restore resumes it running" if taken.ram else "disks and config only"
    pinned = " (pinned)" if taken.pinned else ""
    render.line(f"created checkpoint '{taken.name}'{pinned} of '{owner}': {saved}")
    if created.ram_skipped:
        render.line(f"note: no RAM was saved: '{owner}' is stopped, so this checkpoint is disk only")


# ---- list and show -------------------------------------------------------------------------------
@app.command("list")
def list_(ctx: typer.Context, machine: MachineArg, json_output: JsonFlag = False) -> None:
    """The machine's checkpoints as a tree: what each saved, pins, branches, and where it is now."""
    from autovibe.checkpoints import service

    settings = _settings(ctx, json_output=json_output)
    if settings.hub_url:
        tree = hub_calls.tree(settings, machine)
    else:
        tree = _read(settings, lambda deps: service.tree(deps, machine))
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "machine": tree.machine,
                "vmid": tree.vmid,
                "node": tree.node,
                "status": tree.status,
                "here": tree.here,
                "tree": tree.nested(),
            }
        )
        return
    render.tree(*tree_view(tree))
    if not tree.checkpoints:
        render.line(f"no checkpoints yet: take one with `autovibe checkpoint create {tree.machine}`")


def tree_view(tree: CheckpointTree) -> tuple[str, tuple[render.TreeNode, ...]]:
    """The title and roots of a checkpoint tree as ``render.tree`` draws it (also used by the demo)."""
    # A `here` PVE names but no longer lists hangs at the root, as orphaned checkpoints do.
    here = tree.here if tree.here is not None and tree.get(tree.here) is not None else None
    marker = render.TreeNode(f"{HERE} ({tree.status})")

    def grow(parent: str | None) -> tuple[render.TreeNode, ...]:
        nodes = [render.TreeNode(checkpoint_label(c), grow(c.name)) for c in tree.children(parent)]
        if parent == here:
            nodes.append(marker)
        return tuple(nodes)

    title = f"checkpoints of '{tree.machine}' (VM {tree.vmid} on {tree.node}; times UTC)"
    return title, grow(None)


def checkpoint_label(checkpoint: Checkpoint) -> str:
    """``before · 2026-11-21 09:30 · RAM · pinned · branched → agent-b · clean install``."""
    parts = [checkpoint.name, _when(checkpoint.time), "RAM" if checkpoint.ram else "disk only"]
    if checkpoint.pinned:
        parts.append("pinned")
    if checkpoint.branches:
        parts.append(f"branched → {', '.join(checkpoint.branches)}")
    if checkpoint.description:
        parts.append(_one_line(checkpoint.description))
    return " · ".join(parts)


@app.command()
def show(ctx: typer.Context, machine: MachineArg, name: NameArg, json_output: JsonFlag = False) -> None:
    """One checkpoint: what it saved, its config, and what differs from the machine's config now."""
    from autovibe.checkpoints import service

    settings = _settings(ctx, json_output=json_output)
    if settings.hub_url:
        detail = hub_calls.show(settings, machine, name)
    else:
        detail = _read(settings, lambda deps: service.show(deps, machine, name))
    if json_output:
        render.emit_json({**json_envelope(settings), **detail.model_dump(mode="json")})
        return
    show_checkpoint(detail)


def show_checkpoint(detail: CheckpointDetail) -> None:
    """A checkpoint as ``key  value`` lines, its saved config, and the differences from now."""
    c = detail.checkpoint
    taken = f"{_when(c.time, seconds=True)} UTC" + (f" by {c.created_by}" if c.created_by else "")
    for key, value in (
        ("checkpoint", c.name),
        ("machine", detail.machine),
        ("taken", taken),
        ("saved", "disks, config and RAM" if c.ram else "disks and config (no RAM)"),
        ("parent", c.parent or "-"),
        ("pinned", "yes" if c.pinned else "no"),
        ("branches", ", ".join(c.branches) or "-"),
        ("description", _one_line(c.description) or "-"),
    ):
        render.line(f"{key:<12} {value}")
    render.table(
        render.Table(
            title="Saved config",
            columns=(render.Column("key"), render.Column("value")),
            rows=tuple((key, _one_line(value)) for key, value in detail.config.items()),
        )
    )
    if not detail.changes:
        render.line("no differences: the machine's config now is the one saved in this checkpoint")
        return
    render.table(changes_table(detail))


def changes_table(detail: CheckpointDetail) -> render.Table:
    """What differs between the checkpoint's config and the machine's now (also used by the demo)."""
    return render.Table(
        title=f"Differences from '{detail.checkpoint.name}' to now ({len(detail.changes)})",
        columns=(render.Column("key"), render.Column("at checkpoint"), render.Column("now")),
        rows=tuple(
            (change.key, _absent(change.checkpoint), _absent(change.current)) for change in detail.changes
        ),
    )


def _absent(value: str | None) -> str:
    return "(not set)" if value is None else _one_line(value)


# ---- restore -------------------------------------------------------------------------------------
@app.command()
def restore(
    ctx: typer.Context,
    machine: MachineArg,
    name: NameArg,
    start: Annotated[
        bool, typer.Option("--start", help="Start the machine afterwards if the checkpoint has no RAM.")
    ] = False,
    discard_newer: Annotated[
        bool,
        typer.Option(
            "--discard-newer",
            help="On ZFS: delete the newer checkpoints first (high risk: they are gone for good).",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before --discard-newer deletes checkpoints.")
    ] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT_S,
    approval: Annotated[
        str | None, typer.Option(help="Run an action the gate held, once another identity approved it.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Roll the machine back to a checkpoint: disks and config, and RAM if it was saved (the machine then
    resumes running).

    ZFS rolls back only to a disk's newest snapshot: restoring an older checkpoint there fails unless
    --discard-newer deletes the newer ones first. That asks for confirmation on a terminal; elsewhere
    --yes is required. To keep them, branch a new machine from the checkpoint instead.
    """
    from autovibe.checkpoints import service
    from autovibe.composition import LOCAL_ACTOR

    if discard_newer and not yes and not sys.stdin.isatty():
        raise BadInput(
            "refusing --discard-newer without --yes: it deletes checkpoints for good and nobody is at a "
            "terminal to confirm"
        )
    settings = _settings(ctx, json_output=json_output)
    if discard_newer and not yes:
        if settings.hub_url:
            doomed = hub_calls.would_discard(settings, machine, name)
        else:
            doomed = _read(settings, lambda deps: _would_discard(deps, machine, name))
        question = (
            f"Restore '{machine}' to '{name}' and delete {len(doomed)} newer checkpoint(s) for good: "
            f"{', '.join(doomed)}?"
        )
        if doomed and not typer.confirm(question, default=False, err=True):
            render.note("nothing restored, nothing deleted")
            raise typer.Exit(1)
    restored = _change(
        settings,
        lambda deps: service.restore(
            deps,
            machine,
            name,
            start=start,
            discard_newer=discard_newer,
            actor=LOCAL_ACTOR,
            approval=approval,
        ),
        lock_timeout=lock_timeout,
        label=f"restore {machine} to {name}",
        quiet=json_output,
        remote=lambda: hub_calls.restore(
            settings, machine, name, start=start, discard_newer=discard_newer, approval=approval
        ),
    )
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "machine": restored.machine,
                "restored": restored.checkpoint,
                "status": restored.status,
                "discarded": list(restored.discarded),
                "operation_id": restored.operation_id,
            }
        )
        return
    render.line(
        f"restored '{restored.machine}' to checkpoint '{restored.checkpoint}': it is {restored.status}"
    )
    if restored.discarded:
        render.line(f"deleted the newer checkpoint(s) for good: {', '.join(restored.discarded)}")
    if restored.status != "running":
        render.line(f"start it with `autovibe machine start {restored.machine}`")


async def _would_discard(deps: MachineDeps, ref: str, name: str) -> list[str]:
    """The checkpoints ``restore --discard-newer`` would delete, to confirm; empty when it would delete
    none or would refuse anyway (unknown or protected checkpoints: the restore says why)."""
    from autovibe.checkpoints import service

    target = await service.locate(deps, ref)
    tree = await service.read_tree(deps, target)
    if tree.get(name) is None:
        return []
    doomed = await service.rollback_blockers(deps, target, tree, name)
    found = [tree.get(n) for n in doomed]
    if any(c is not None and (c.pinned or c.branches) for c in found):
        return []
    return doomed


# ---- branch --------------------------------------------------------------------------------------
@app.command()
def branch(
    ctx: typer.Context,
    machine: MachineArg,
    name: NameArg,
    new_name: Annotated[str, typer.Option("--as", metavar="NEW", help="The new machine's name.")],
    project: Annotated[
        str | None, typer.Option(help="Project of the new machine [default: the source's].")
    ] = None,
    node: Annotated[str | None, typer.Option(help="PVE node [default: the source's].")] = None,
    no_start: Annotated[bool, typer.Option("--no-start", help="Leave the new machine stopped.")] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT_S,
    json_output: JsonFlag = False,
) -> None:
    """Clone a checkpoint into a new machine (a full clone), recording where it came from.

    PVE clones the checkpoint's disk state, not its RAM: the new machine boots fresh from those disks.
    A failure undoes everything it did (no orphan VM) and names the operation.
    """
    from autovibe.checkpoints import service
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines import service as machines
    from autovibe.machines.models import check_vm_name

    try:
        check_vm_name(new_name)
    except ValueError as exc:
        raise BadInput(f"--as: {exc}") from None
    settings = _settings(ctx, json_output=json_output)

    def progress_of(bar: render.ProgressBar | None) -> Callable[[str, int, int], None]:
        def progress(step: str, index: int, total: int) -> None:
            if bar is not None:
                bar.update(index / total if total else 1.0, step)

        return progress

    async def go(deps: MachineDeps, bar: render.ProgressBar | None) -> tuple[str, MachineRead]:
        record = await service.branch(
            deps,
            machine,
            name,
            new_name=new_name,
            project=project,
            node=node,
            start=not no_start,
            actor=LOCAL_ACTOR,
            progress=progress_of(bar),
        )
        return record.id, await machines.show(deps, new_name)

    async def local(bar: render.ProgressBar | None) -> tuple[str, MachineRead]:
        async with _deps(settings, lock_timeout) as deps:
            return await go(deps, bar)

    def work(bar: render.ProgressBar | None) -> tuple[str, MachineRead]:
        if not settings.hub_url:
            return run(local(bar))
        return hub_calls.branch(
            settings, machine, name, new_name=new_name, project=project, node=node, start=not no_start,
            steps=progress_of(bar),
        )  # fmt: skip

    if json_output:
        operation_id, view = _named(lambda: work(None))
        render.emit_json(
            {
                **json_envelope(settings),
                "machine": view.model_dump(mode="json"),
                "source": {"machine": view.parent_machine, "checkpoint": view.parent_checkpoint},
                "operation_id": operation_id,
            }
        )
        return
    with render.progress(f"branch {machine} at {name} into {new_name}") as bar:
        operation_id, view = _named(lambda: work(bar))
    booted = "booted fresh" if view.status == "running" else f"is {view.status}"
    render.line(
        f"branched '{view.name}' from checkpoint '{name}' of '{view.parent_machine}': PVE cloned the "
        f"checkpoint's disk state, not its RAM, so it {booted}"
    )
    from autovibe.cli.commands.machine import show_machine

    show_machine(view)
    render.line(f"{'operation':<10} {operation_id[:8]}")


# ---- delete, pin ---------------------------------------------------------------------------------
@app.command()
def delete(
    ctx: typer.Context,
    machine: MachineArg,
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", help="Delete it even if it is pinned.")] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT_S,
    approval: Annotated[
        str | None, typer.Option(help="Run an action the gate held, once another identity approved it.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Delete a checkpoint: its disk snapshots and saved RAM. A pinned one needs --force; machines
    branched from it are full clones and keep working."""
    from autovibe.checkpoints import service
    from autovibe.composition import LOCAL_ACTOR

    settings = _settings(ctx, json_output=json_output)

    async def go(deps: MachineDeps) -> tuple[str, str]:
        record = await service.delete(deps, machine, name, actor=LOCAL_ACTOR, force=force, approval=approval)
        return str(record.params["machine"]), record.id

    owner, operation_id = _change(
        settings,
        go,
        lock_timeout=lock_timeout,
        label=f"delete checkpoint {name} of {machine}",
        quiet=json_output,
        remote=lambda: hub_calls.delete(settings, machine, name, force=force, approval=approval),
    )
    if json_output:
        render.emit_json(
            {**json_envelope(settings), "machine": owner, "deleted": name, "operation_id": operation_id}
        )
        return
    render.line(f"deleted checkpoint '{name}' of '{owner}'; operation {operation_id[:8]}")


def _pin(ctx: typer.Context, machine: str, name: str, *, pinned: bool, json_output: bool) -> None:
    from autovibe.checkpoints import service

    settings = _settings(ctx, json_output=json_output)

    async def go(deps: MachineDeps) -> tuple[str, Checkpoint]:
        target = await service.locate(deps, machine)
        return target.name, await service.pin(deps, target.name, name, pinned=pinned)

    if settings.hub_url:
        owner, marked = hub_calls.pin(settings, machine, name, pinned=pinned)
    else:
        owner, marked = _read(settings, go)
    if json_output:
        render.emit_json(
            {**json_envelope(settings), "machine": owner, "checkpoint": marked.model_dump(mode="json")}
        )
        return
    state = "pinned: retention never removes it" if marked.pinned else "unpinned: retention may remove it"
    render.line(f"checkpoint '{marked.name}' of '{owner}' is {state}")


@app.command()
def pin(ctx: typer.Context, machine: MachineArg, name: NameArg, json_output: JsonFlag = False) -> None:
    """Pin a checkpoint: retention never removes it, and delete needs --force."""
    _pin(ctx, machine, name, pinned=True, json_output=json_output)


@app.command()
def unpin(ctx: typer.Context, machine: MachineArg, name: NameArg, json_output: JsonFlag = False) -> None:
    """Unpin a checkpoint: retention policies may remove it again."""
    _pin(ctx, machine, name, pinned=False, json_output=json_output)


from autovibe.cli.commands.checkpoint_retention import register  # noqa: E402  (adds prune/policy/schedule)

register(app)
