"""The root ``autovibe`` app: global options, lazily loaded command groups, one error boundary.

Start-up time matters (``autovibe --help`` should cost little more than importing Typer, see
``bench/cli_startup.py``), so this module imports only Typer and autovibe's light modules. Each
command group lives in ``autovibe.cli.commands.<name>`` and is imported only when that group runs;
``--help`` lists the groups from the static :data:`COMMANDS` table. Root help is plain click
formatting on purpose: Rich help formatting alone would double the start-up time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from autovibe import __version__

__all__ = ["COMMANDS", "LazyCommand", "app", "main"]


@dataclass(frozen=True)
class LazyCommand:
    """A command group known by name and one-line help, imported from ``module`` on first use."""

    module: str
    help: str


COMMANDS: dict[str, LazyCommand] = {
    "cluster": LazyCommand(
        "autovibe.cli.commands.cluster", "Show the cluster: version, nodes, guests, storage."
    ),
    "doctor": LazyCommand(
        "autovibe.cli.commands.doctor", "Check that autovibe can reach, trust and use PVE."
    ),
    "project": LazyCommand("autovibe.cli.commands.project", "Projects (tenants) that own machines."),
    "machine": LazyCommand(
        "autovibe.cli.commands.machine", "Deploy, list, power and delete machines (one or a fleet)."
    ),
    "checkpoint": LazyCommand(
        "autovibe.cli.commands.checkpoint",
        "Checkpoints: snapshots with RAM, as a tree; restore, branch, prune.",
    ),
    "ops": LazyCommand(
        "autovibe.cli.commands.ops", "Journaled operations: list, show, resume after a crash."
    ),
    "usage": LazyCommand(
        "autovibe.cli.commands.usage", "Usage per project or machine: CPU, memory, network, storage."
    ),
    "quota": LazyCommand(
        "autovibe.cli.commands.quota", "Project quotas: warn, throttle, then stop non-critical machines."
    ),
    "limits": LazyCommand(
        "autovibe.cli.commands.limits", "Per-machine limits: max CPU, memory, uptime; idle auto-stop."
    ),
    "network": LazyCommand(
        "autovibe.cli.commands.network", "Network isolation profiles through the PVE firewall: apply, check."
    ),
    "user": LazyCommand("autovibe.cli.commands.user", "Users of the hub: add, list, disable, enable."),
    "token": LazyCommand("autovibe.cli.commands.token", "API tokens: create (shown once), list, revoke."),
    "role": LazyCommand(
        "autovibe.cli.commands.role",
        "Role bindings: viewer, operator, admin, auditor, globally or per project.",
    ),
    "audit": LazyCommand(
        "autovibe.cli.commands.audit", "The tamper-evident audit log: list, show, export, verify."
    ),
    "secret": LazyCommand(
        "autovibe.cli.commands.secret", "Secrets kept encrypted in the store: set, list, delete, rotate-key."
    ),
    "pve": LazyCommand(
        "autovibe.cli.commands.pve", "Least-privilege PVE access: the role, user and token autovibe needs."
    ),
    "ask": LazyCommand(
        "autovibe.cli.commands.ask", "Ask the assistant: a typed plan, previewed, gated, run."
    ),
    "plan": LazyCommand(
        "autovibe.cli.commands.plan", "Show the plan the assistant makes of a request (--json)."
    ),
    "approval": LazyCommand(
        "autovibe.cli.commands.approval", "Approval requests for high-risk actions: list, approve, reject."
    ),
    "approve": LazyCommand(
        "autovibe.cli.commands.approve", "Approve a held high-risk action (another identity)."
    ),
    "metrics": LazyCommand(
        "autovibe.cli.commands.metrics", "Prometheus metrics: usage, quotas, machines, operations, PVE calls."
    ),
    "hub": LazyCommand(
        "autovibe.cli.commands.hub", "One pass of the hub's scheduler (usage, checkpoints, leases)."
    ),
    "serve": LazyCommand(
        "autovibe.cli.commands.serve", "Run the hub: REST API, job workers, scheduler loop (replicas lead)."
    ),
    "db": LazyCommand("autovibe.cli.commands.db", "The store: migrate it to the newest schema."),
    "demo": LazyCommand("autovibe.cli.commands.demo", "A guided tour on a throwaway simulated cluster."),
    "sim": LazyCommand("autovibe.cli.commands.sim", "Run the embedded PVE simulator for any client."),
}


class LazyGroup(TyperGroup):
    """A Typer group whose subcommands come from :data:`COMMANDS` and load on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*self.commands, *(name for name in COMMANDS if name not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(COMMANDS[cmd_name].module)
            command = typer.main.get_command(module.app)
            command.name = cmd_name
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        # From the static table: asking each group for its help would import all of them.
        rows = [(name, COMMANDS[name].help) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            # Typer suggests only from loaded groups; suggest from the whole table instead.
            message = getattr(exc, "message", "")
            close = get_close_matches(args[0], list(COMMANDS), n=1) if args else []
            if close and "Did you mean" not in message:
                exc.message = f"{message.rstrip('.')}. Did you mean {close[0]!r}?"
            raise


app = typer.Typer(
    name="autovibe",
    cls=LazyGroup,
    rich_markup_mode=None,
    add_completion=False,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="autovibe: a control plane for Proxmox VE, with an embedded PVE simulator.\n\n"
    "Without --pve-url (or AUTOVIBE_PVE_URL) every command runs against a simulated cluster "
    "kept under the XDG data directory, so you can try everything safely.\n\n"
    "Credentials come from AUTOVIBE_PVE_TOKEN (or AUTOVIBE_PVE_USER and AUTOVIBE_PVE_PASSWORD) or the "
    "config file, never from flags, so they stay out of shell history and process listings.",
)


def _show_version(value: bool) -> None:
    if value:
        from autovibe.cli import render

        render.help_text(f"autovibe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file [env: AUTOVIBE_CONFIG].", dir_okay=False),
    ] = None,
    pve_url: Annotated[
        str | None, typer.Option("--pve-url", help="PVE API URL, https://HOST:8006; unset = simulator.")
    ] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="Trust PVE certificates signed by this PEM CA.")
    ] = None,
    fingerprint: Annotated[
        str | None, typer.Option("--fingerprint", help="Trust the PVE certificate with this SHA-256.")
    ] = None,
    hub: Annotated[
        str | None,
        typer.Option(
            "--hub", help="Send commands to this hub's API (https://HOST:PORT) [env: AUTOVIBE_HUB_URL]."
        ),
    ] = None,
    sim_state: Annotated[
        Path | None, typer.Option("--sim-state", help="State file of the embedded simulated cluster.")
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, show_default=False, help="Show more (tracebacks).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Store the global options for the command that runs, or show help when none is named."""
    from autovibe.cli.commands import CliState

    overrides = {
        "pve_url": pve_url,
        "ca_bundle": ca_bundle,
        "fingerprint": fingerprint,
        "sim_state_path": sim_state,
        "hub_url": hub,
    }
    ctx.obj = CliState(config_path=config, overrides=overrides, verbose=verbose)
    if ctx.invoked_subcommand is None:
        from autovibe.cli import render

        render.help_text(ctx.get_help())
        raise typer.Exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script passes it to ``sys.exit``).

    This is the one error boundary: every exception becomes an exit code from ``cli.errors`` and a
    one-line message on stderr; a traceback only with ``-v`` and only for unexpected errors.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="autovibe", standalone_mode=False)
    except (Exception, KeyboardInterrupt) as exc:
        return _fail(exc, verbose=_verbosity(args))
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _fail(exc: BaseException, *, verbose: int) -> int:
    from autovibe.cli import render
    from autovibe.cli.errors import describe_failure

    if type(exc).__name__ == "NoArgsIsHelpError":
        # A group with no_args_is_help named without a subcommand: that is a request for help, not an
        # error (our own groups behave the same). Rich help is already printed; plain help is the text.
        text = exc.format_message() if isinstance(exc, typer.TyperException) else ""
        if text.strip():
            render.help_text(text)
        return 0
    failure = describe_failure(exc)
    if verbose and not failure.expected:
        render.traceback(exc)
    render.error(failure.message, failure.hint)
    return failure.code


def _verbosity(args: Sequence[str]) -> int:
    # Read from argv because the failure may happen before (or while) the root options are parsed.
    count = 0
    for arg in args:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count
