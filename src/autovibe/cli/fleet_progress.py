"""Running a fleet deploy from the CLI: live progress, what Ctrl-C does, and the outcome report.

:func:`deploy_fleet` is ``autovibe machine create`` after its input was validated; :func:`run_fleet`
and :func:`outcomes_table` are shared with the demo.

:class:`FleetDisplay` is the ``progress`` callback of ``fleet.deploy``. On a terminal it draws a
total bar and one Rich bar per machine (its current saga step as the description); when stdout is
piped it writes one plain line per machine that finishes; with ``--json`` it draws nothing. It lives
beside ``render`` rather than inside it because it is a live, stateful display, and it takes its
streams and terminal decision from ``render.Output``, so it follows the same rules.

:class:`CtrlC` gives SIGINT two meanings while a fleet runs: the first sets the ``stop`` event (no
new machine starts; those in flight finish, or are undone if they fail); the second cancels the deploy
task, which makes the operations runner undo every machine still in flight before the task ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, run
from autovibe.cli.render import Output

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from autovibe.machines.deploy import MachineDeps
    from autovibe.machines.fleet import DeployOutcome
    from autovibe.machines.models import MachineCreate
    from autovibe.machines.profiles import Profile
    from autovibe.settings import Settings

EXIT_INTERRUPTED = 130
NOT_DEPLOYED = ("failed", "stuck")
# MachineCreate fields as the `machine create` flags that set them, so errors name what was typed.
REQUEST_FLAGS = {
    "name": "--name",
    "profile": "--profile",
    "project": "--project",
    "node": "--node",
    "cores": "--cores",
    "memory_mib": "--memory",
    "disk_gib": "--disk",
    "full_clone": "--linked",
    "start": "--no-start",
    "ttl": "--ttl",
    "labels": "--label",
    "count": "--count",
}


class FleetDisplay:
    """Progress of one fleet: call it as ``(name, step, index, total)``; ``index == total`` with step
    ``"done"`` means the machine is deployed. Remembers which machines started and which finished, so
    the caller can say what happened even when the deploy was cancelled."""

    def __init__(self, out: Output, names: Sequence[str], *, quiet: bool = False) -> None:
        self.out = out
        self.names = tuple(names)
        self.started: set[str] = set()
        self.deployed: set[str] = set()
        self.quiet = quiet
        self._fraction: dict[str, float] = {}
        self._bar: Progress | None = None
        self._total: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> FleetDisplay:
        if self.out.is_terminal and not self.quiet:
            self._bar = _rich_progress(self.out)
            self._total = self._bar.add_task(
                f"0 of {len(self.names)} deployed", total=len(self.names), name="total"
            )
            self._bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, name: str, step: str, index: int, total: int) -> None:
        self.started.add(name)
        self._fraction[name] = index / total if total else 1.0
        if step == "done":
            self.deployed.add(name)
        if self._bar is not None:
            self._draw(name, step, index, total)
        elif step == "done" and not self.quiet:
            self.out.line(f"{name}: deployed")
            self.out.stdout.flush()  # a pipe is block-buffered; whoever reads it wants each line now

    def _draw(self, name: str, step: str, index: int, total: int) -> None:
        assert self._bar is not None and self._total is not None
        from rich.markup import escape

        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = self._bar.add_task(step, total=total, name=escape(name))
        description = "[green]deployed[/]" if step == "done" else escape(step)
        self._bar.update(task, description=description, completed=index, total=total)
        self._bar.update(
            self._total,
            completed=sum(self._fraction.values()),
            description=f"{len(self.deployed)} of {len(self.names)} deployed",
        )

    def settle(self, status: dict[str, str]) -> None:
        """Show each machine's final status (``failed``, ``skipped``, ``undone``…) on its bar."""
        if self._bar is None:
            return
        for name, final in status.items():
            task = self._tasks.get(name)
            if task is not None and final != "deployed":
                self._bar.update(task, description=f"[red]{final}[/]")

    def note(self, text: str) -> None:
        """A message while the display runs (Ctrl-C was pressed): above the bars on a terminal, a
        plain line when piped, on stderr with ``--json`` so stdout stays one JSON document."""
        if self._bar is not None:
            from rich.markup import escape

            self._bar.console.print(f"[yellow]{escape(text)}[/]")
        elif self.quiet:
            self.out.stderr.write(text + "\n")
            self.out.stderr.flush()
        else:
            self.out.line(text)
            self.out.stdout.flush()


def _rich_progress(out: Output) -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.fields[name]}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(file=out.stdout, highlight=False),
        auto_refresh=True,
    )


class CtrlC:
    """While entered (inside the running event loop), SIGINT no longer raises KeyboardInterrupt:

    1. the first sets ``stop`` and says so;
    2. the second cancels ``work`` (the runner then undoes each in-flight operation) and says so;
    3. later ones only remind that the undo is running.

    The previous SIGINT handler is restored on exit. ``pressed`` counts the presses.
    """

    def __init__(self, stop: asyncio.Event, work: asyncio.Future[Any], note: Callable[[str], None]) -> None:
        self.stop = stop
        self.work = work
        self.note = note
        self.pressed = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        self._previous = signal.getsignal(signal.SIGINT)
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
        except (NotImplementedError, RuntimeError):  # no signal support here: Ctrl-C stays an interrupt
            return self
        self._installed = True
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _on_sigint(self) -> None:
        self.pressed += 1
        if self.pressed == 1:
            self.stop.set()
            self.note(
                "stopping: no new machines will start; those in flight finish or are undone "
                "(Ctrl-C again to undo them now)"
            )
        elif self.pressed == 2:
            self.work.cancel()
            self.note("cancelling: undoing every machine still in flight; wait for it to finish")
        else:
            self.note(
                "still undoing in-flight machines; if you kill autovibe now, run `autovibe ops resume` later"
            )


# ---- the deploy, start to finish ------------------------------------------------------------------
def deploy_fleet(
    settings: Settings, request: MachineCreate, catalog: Mapping[str, Profile], *, json_output: bool
) -> int:
    """Deploy ``request`` with progress and Ctrl-C handling, report every outcome, return the exit
    code: 0 all deployed, 1 any failed, 130 stopped by Ctrl-C. Raises the command's one-line
    ``BadInput`` (exit 2) when planning refuses the request (unknown project or node) — before any
    machine starts."""
    from autovibe.composition import open_machines

    async def deploy() -> tuple[list[DeployOutcome], int]:
        async with open_machines(settings) as deps:
            return await run_fleet(deps, request, catalog, display)

    display = FleetDisplay(render.output(), request.names, quiet=json_output)
    with display:
        if settings.hub_url:  # the hub deploys; its job's step events move the same bars
            from autovibe.cli import remote

            outcomes, pressed = remote.deploy(settings, request, display)
        else:
            outcomes, pressed = run(deploy())
        display.settle({o.name: o.status for o in outcomes})
    failed = [o for o in outcomes if o.status in NOT_DEPLOYED]
    if json_output:
        render.emit_json(
            {
                **json_envelope(settings),
                "interrupted": pressed > 0,
                "outcomes": [_outcome_dict(o) for o in outcomes],
            }
        )
    else:
        render.table(outcomes_table(outcomes))
        render.line(_summary(outcomes, interrupted=pressed > 0))
    for outcome in failed:
        render.error(f"{outcome.name}: {_one_line(outcome.error or outcome.status)}")
    return EXIT_INTERRUPTED if pressed else 1 if failed else 0


async def run_fleet(
    deps: MachineDeps, request: MachineCreate, catalog: Mapping[str, Profile], display: FleetDisplay
) -> tuple[list[DeployOutcome], int]:
    """``fleet.deploy`` under :class:`CtrlC`; returns the outcomes and how often Ctrl-C was pressed.

    After a second Ctrl-C the deploy ends cancelled, without outcomes; they are then read back from the
    journal (``deployed``, ``undone``, ``stuck`` if an undo failed, or ``skipped``).
    """
    from autovibe.cli.commands.project import refuse
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines import fleet
    from autovibe.machines.errors import InvalidMachineRequest, NodeNotFound, ProjectNotFound

    since = datetime.now(UTC)  # the journal's deploy operations from here on are this fleet's
    stop = asyncio.Event()
    work = asyncio.ensure_future(
        fleet.deploy(deps, request, catalog, actor=LOCAL_ACTOR, progress=display, stop=stop)
    )
    with CtrlC(stop, work, display.note) as ctrl_c:
        try:
            result = await work
        except (InvalidMachineRequest, NodeNotFound, ProjectNotFound) as exc:
            # Planning refused the request before any operation started: bad input, exit 2.
            raise refuse(exc, REQUEST_FLAGS) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the deploy
            why = "stopped by Ctrl-C"
            return fleet.outcomes_after_cancel(deps.db, display.names, since=since, why=why), ctrl_c.pressed
    return list(result.outcomes), ctrl_c.pressed


def outcomes_table(outcomes: Sequence[DeployOutcome]) -> render.Table:
    """One row per requested machine: status, vmid, node and the operation that did the work."""
    deployed = sum(o.status == "deployed" for o in outcomes)
    return render.Table(
        title=f"Deployed {deployed} of {len(outcomes)}",
        columns=(
            render.Column("name"),
            render.Column("status"),
            render.Column("vmid", "right"),
            render.Column("node"),
            render.Column("operation"),
        ),
        rows=tuple(
            (
                o.name,
                o.status,
                str(o.vmid) if o.vmid is not None else "-",
                o.node or "-",
                (o.operation_id or "-")[:8],
            )
            for o in outcomes
        ),
    )


def _summary(outcomes: Sequence[DeployOutcome], *, interrupted: bool) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"{parts}{' (stopped by Ctrl-C)' if interrupted else ''}"


def _outcome_dict(outcome: DeployOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "status": outcome.status,
        "node": outcome.node or None,
        "vmid": outcome.vmid,
        "operation_id": outcome.operation_id,
        "error": outcome.error,
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())
