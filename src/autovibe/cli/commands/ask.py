"""``autovibe ask "..."`` and ``autovibe plan "..."``: the assistant.

``plan`` prints what the planner produced, before resolution or execution (``--json`` for scripts and
evaluation). ``ask`` resolves the plan against the live inventory, previews it (actions, the machines
they touch, risk and reasons), asks on a terminal, and runs it through the services and the gate; a
high-risk plan is held for approval (bound to the plan's digest), whatever ``--yes`` says.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from autovibe.cli import render
from autovibe.cli.commands import json_envelope, load_cli_settings, run
from autovibe.cli.commands.project import BadInput, JsonFlag

if TYPE_CHECKING:
    from autovibe.ai.execute import ResolvedPlan
    from autovibe.ai.planners.base import Planner, PlannerResult, PlanningContext
    from autovibe.machines.deploy import MachineDeps
    from autovibe.settings import Settings

ask_app = typer.Typer(rich_markup_mode=None, add_completion=False)
plan_app = typer.Typer(rich_markup_mode=None, add_completion=False)
app = ask_app

RequestArg = Annotated[
    str, typer.Argument(metavar="REQUEST", help='What you want, e.g. "two claude code boxes for alpha".')
]
PlannerOpt = Annotated[
    str | None,
    typer.Option("--planner", help="offline (default, no model), anthropic, or openai (compatible)."),
]


def make_planner(settings: Settings, name: str | None) -> Planner:
    from autovibe.ai.planners.offline import OfflinePlanner

    chosen = name or settings.ai.planner
    if chosen == "offline":
        return OfflinePlanner()
    if chosen == "anthropic":
        from autovibe.ai.planners.anthropic import AnthropicPlanner

        if settings.ai.anthropic_api_key is None:
            raise BadInput("--planner anthropic needs ai.anthropic_api_key (AUTOVIBE_AI__ANTHROPIC_API_KEY)")
        return AnthropicPlanner(
            settings.ai.anthropic_api_key.get_secret_value(),
            model=settings.ai.anthropic_model,
            base_url=settings.ai.anthropic_base_url,
            redact=True if settings.ai.redact is None else settings.ai.redact,
        )
    if chosen == "openai":
        from autovibe.ai.planners.openai_compat import OpenAICompatPlanner

        if settings.ai.openai_base_url is None:
            raise BadInput("--planner openai needs ai.openai_base_url (e.g. http://127.0.0.1:11434/v1)")
        key = settings.ai.openai_api_key.get_secret_value() if settings.ai.openai_api_key else "none"
        return OpenAICompatPlanner(
            settings.ai.openai_base_url, api_key=key, model=settings.ai.openai_model,
            redact=bool(settings.ai.redact),
        )  # fmt: skip
    raise BadInput(f"--planner: '{chosen}' is not one of offline, anthropic, openai")


async def context_of(deps: MachineDeps, settings: Settings) -> PlanningContext:
    """A compact inventory for the planner: names, projects, profiles, statuses; never secrets."""
    from autovibe.ai.planners.base import InventoryMachine, PlanningContext
    from autovibe.composition import network_context, profiles
    from autovibe.machines import projects
    from autovibe.machines import service as machines

    listed = await machines.list_machines(deps)
    known = [p.project.name for p in projects.list_projects(db=deps.db)]
    return PlanningContext(
        projects=tuple(known),
        profiles=tuple(profiles(settings)),
        network_profiles=tuple(network_context(settings).profiles),
        machines=tuple(
            InventoryMachine(m.name, m.vmid, m.project, m.profile, m.status, dict(m.labels)) for m in listed
        ),
        default_project=known[0] if len(known) == 1 else None,
    )


def _planned(result: PlannerResult) -> dict[str, object]:
    plan = result.plan
    return {
        "planner": result.planner,
        "model": result.model,
        "actions": [a.model_dump(mode="json") for a in plan.actions],
        "explanation": plan.explanation,
        "assumptions": plan.assumptions,
        "clarification": plan.clarification,
    }


@plan_app.command()
def plan(
    ctx: typer.Context, request: RequestArg, planner: PlannerOpt = None, json_output: JsonFlag = False
) -> None:
    """Show the plan a planner makes of REQUEST, without resolving or running anything."""
    from autovibe.ai.execute import resolve
    from autovibe.composition import open_machines

    settings = load_cli_settings(ctx)
    chosen = make_planner(settings, planner)

    async def go() -> tuple[PlannerResult, ResolvedPlan]:
        async with open_machines(settings) as deps:
            result = await chosen.plan(request, await context_of(deps, settings))
            return result, await resolve(deps, result.plan, request=request)

    result, resolved = run(go())
    body = {
        **_planned(result),
        "risk": resolved.risk,
        "score": resolved.score,
        "reasons": list(resolved.reasons),
        "needs_approval": resolved.score >= settings.security.approve_at,
        "digest": resolved.digest,
    }
    if json_output:
        render.emit_json({**json_envelope(settings), **body})
        return
    _preview(resolved, result)


def _preview(resolved: ResolvedPlan, result: PlannerResult) -> None:
    plan = resolved.plan
    if plan.clarification:
        render.line(f"the assistant needs to know more: {plan.clarification}")
        return
    render.table(
        render.Table(
            title=f"Plan ({len(plan.actions)} action(s), {result.planner} planner) — risk {resolved.risk} "
            f"({resolved.score})",
            columns=(
                render.Column("#", "right"),
                render.Column("action"),
                render.Column("targets"),
                render.Column("parameters"),
            ),
            rows=tuple(
                (
                    str(a.index + 1),
                    a.kind,
                    ", ".join(a.names) or "-",
                    ", ".join(f"{k}={v}" for k, v in a.params.items() if v not in (None, {}, [], "")) or "-",
                )
                for a in resolved.actions
            ),
        )
    )
    for reason in resolved.reasons:
        render.line(f"  risk: {reason}")
    for assumption in plan.assumptions:
        render.line(f"  assumed: {assumption}")


@ask_app.command()
def ask(
    ctx: typer.Context,
    request: RequestArg,
    planner: PlannerOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Preview the plan; run nothing.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (never approves).")
    ] = False,
    approval: Annotated[str | None, typer.Option(help="Run a plan another identity approved.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Turn REQUEST into a plan, preview it, and run it through the services and the security gate."""
    from autovibe.ai.execute import execute, resolve
    from autovibe.composition import LOCAL_ACTOR, describe_target, network_context, open_machines, profiles

    settings = load_cli_settings(ctx)
    chosen = make_planner(settings, planner)
    if not json_output:
        render.header(describe_target(settings))

    async def go() -> int:
        async with open_machines(settings) as deps:
            result = await chosen.plan(request, await context_of(deps, settings))
            resolved = await resolve(deps, result.plan, request=request)
            if json_output:
                render.emit_json({**json_envelope(settings), **_planned(result), "risk": resolved.risk})
            else:
                _preview(resolved, result)
            if resolved.plan.clarification or not resolved.actions or dry_run:
                return 0
            if not yes:
                if not sys.stdin.isatty():
                    raise BadInput("refusing to run a plan without --yes: nobody is at a terminal to confirm")
                if not typer.confirm("Run this plan?", default=False, err=True):
                    render.note("nothing was run")
                    return 1
            report = await execute(
                deps, resolved, profiles=profiles(settings), actor=LOCAL_ACTOR, approval=approval,
                auto_checkpoint=settings.ai.auto_checkpoint, progress=render.note, request=request,
                planner=result.planner, model=result.model, network=network_context(settings),
            )  # fmt: skip
            for index, output in report.outputs.items():
                if isinstance(output, dict) and "code" in output:  # codegen: the code, then its findings
                    render.raw(str(output["code"]))
                    for finding in output["findings"]:
                        render.note(f"finding: {finding}")
                elif index is not None and resolved.actions[index].kind.endswith(".query") and json_output:
                    render.emit_json({"action": resolved.actions[index].kind, "result": output})
            render.note(f"done: {', '.join(report.done)}")
            return 0

    raise typer.Exit(run(go()))
