"""From a plan to what happens: resolve selectors against the live inventory, weigh the whole plan's
risk, pass the gate once for the plan (its approval bound to the plan's digest), then run each action
through the same services a person's commands use (each passes the gate again for its own target).

Before an AI-initiated destructive step, the machines it touches get an automatic checkpoint
(``auto_checkpoint``), so a bad plan can be undone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from autovibe.ai.plan import DESTRUCTIVE, READ_ONLY, Plan, Risk, Selector
from autovibe.checkpoints import service as checkpoints
from autovibe.checkpoints.retention import RetentionPolicy
from autovibe.errors import AutovibeNotFound
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, MachineRead, parse_request, parse_ttl
from autovibe.machines.profiles import Profile
from autovibe.network.service import NetworkContext
from autovibe.security.risk import Subject, assess

# Text in a request that tries to talk to the assistant's rules instead of asking for work.
_INJECTION = re.compile(
    r"ignore (all |any )?(previous|prior|above) (instructions|rules)|^\s*system\s*:|\bsystem prompt\b|"
    r"you are now|disregard (the )?(policy|rules|instructions)|without (asking for )?approval|"
    r"approval is not required|bypass (the )?(gate|policy|approval)",
    re.IGNORECASE | re.MULTILINE,
)
INJECTED_DESTRUCTIVE = 75  # above any sane approve_at, below the default deny_at: held, not refused
RESOURCE_METRIC = {
    "cpu_hours": "cpu_core_hours",
    "memory_gib_hours": "mem_gib_hours",
    "network_gb": "net_gb",
    "storage_gb": "storage_gib",
}


class PlanTargetsMissing(AutovibeNotFound):
    """A destructive step of the plan selects no machine (a name or vmid that does not exist)."""


def injection_signals(request: str) -> list[str]:
    return sorted({m.group(0).strip().lower() for m in _INJECTION.finditer(request)})


@dataclass(frozen=True)
class ResolvedAction:
    index: int
    kind: str
    params: dict[str, Any]
    machines: tuple[MachineRead, ...] = ()  # the live machines a selector resolved to

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.machines]


@dataclass(frozen=True)
class ResolvedPlan:
    plan: Plan
    actions: tuple[ResolvedAction, ...]
    score: int
    risk: Risk
    reasons: tuple[str, ...]
    digest: str
    injection: tuple[str, ...] = ()


def _select(selector: Selector, inventory: list[MachineRead]) -> tuple[MachineRead, ...]:
    if selector.empty:
        return ()
    chosen = []
    for machine in inventory:
        if selector.names and machine.name not in selector.names:
            continue
        if selector.vmids and machine.vmid not in selector.vmids:
            continue
        if selector.project and machine.project != selector.project:
            continue
        if selector.profile and machine.profile != selector.profile:
            continue
        if any(machine.labels.get(k) != v for k, v in selector.labels.items()):
            continue
        chosen.append(machine)
    return tuple(chosen)


def _level(score: int) -> Risk:
    return "low" if score < 25 else "medium" if score < 50 else "high" if score < 90 else "critical"


async def resolve(deps: MachineDeps, plan: Plan, *, request: str = "") -> ResolvedPlan:
    """Every selector turned into the live machines it names (the identity's readable ones only), and
    the plan's risk: the riskiest action, plus breadth, plus 20 for text aimed at the assistant."""
    inventory = await machines.list_machines(deps)
    resolved: list[ResolvedAction] = []
    worst, reasons = 0, []
    for index, action in enumerate(plan.actions):
        params = action.model_dump(mode="json", exclude={"kind", "target"})
        target = getattr(action, "target", None)
        chosen = _select(target, inventory) if isinstance(target, Selector) else ()
        resolved.append(ResolvedAction(index, action.kind, params, chosen))
        count = len(chosen) or int(params.get("count", 1) or 1)
        risk = assess(Subject(action.kind, machines=[m.labels for m in chosen], count=count))
        if risk.score > worst:
            worst = risk.score
        reasons += [f"{action.kind}: {r}" for r in risk.reasons]
    injection = injection_signals(request)
    score = min(100, worst + (20 if injection else 0))
    if injection and any(a.kind in DESTRUCTIVE for a in resolved):
        score = max(score, INJECTED_DESTRUCTIVE)  # such a plan never runs without a person's approval
    if injection:
        reasons.append("the request contains text aimed at the assistant's rules: " + "; ".join(injection))
    # The approval covers the plan as resolved: the same words over a changed inventory are another plan.
    names = json.dumps([a.names for a in resolved])
    digest = hashlib.sha256((plan.digest() + names).encode()).hexdigest()
    return ResolvedPlan(plan, tuple(resolved), score, _level(score), tuple(reasons), digest, tuple(injection))


@dataclass
class ExecutionReport:
    done: list[str] = field(default_factory=list)
    outputs: dict[int, Any] = field(default_factory=dict)


async def execute(
    deps: MachineDeps,
    resolved: ResolvedPlan,
    *,
    profiles: Mapping[str, Profile],
    actor: str,
    approval: str | None = None,
    auto_checkpoint: bool = True,
    progress: Callable[[str], None] | None = None,
    request: str = "",
    planner: str = "",
    model: str | None = None,
    network: NetworkContext | None = None,
) -> ExecutionReport:
    """Run the plan after the gate admits it as a whole (``ai.plan``, approval bound to its digest)."""
    empty = [a for a in resolved.actions if a.kind in DESTRUCTIVE and not a.machines]
    if empty:
        first = empty[0]
        raise PlanTargetsMissing(
            f"step {first.index + 1} ({first.kind}) matches no machine: nothing was run",
            hint="check the names with `autovibe machine list`, then ask again",
        )
    report = ExecutionReport()
    mutating = [a for a in resolved.actions if a.kind not in READ_ONLY]
    subject = Subject("ai.plan", count=max(1, sum(len(a.machines) or 1 for a in mutating)),
                      details={"plan_score": resolved.score})  # fmt: skip
    permit = deps.security.admit(
        deps.identity, "ai.plan", target=f"plan of {len(resolved.actions)} action(s)",
        project=_single_project(resolved), subject=subject,
        params={
            "digest": resolved.digest, "actions": [a.kind for a in resolved.actions],
            "request_sha256": hashlib.sha256(request.encode()).hexdigest(),
            "planner": planner, "model": model,
            "plan": resolved.plan.model_dump(mode="json"),
        },
        approval=approval,
    )  # fmt: skip
    with permit:
        for action in resolved.actions:
            if progress is not None:
                progress(f"{action.index + 1}. {action.kind}")
            target = getattr(resolved.plan.actions[action.index], "target", None)
            if isinstance(target, Selector) and action.kind not in DESTRUCTIVE:
                # A later step may name machines an earlier one just made ("... and checkpoint them"). What
                # a destructive step touches stays exactly what the preview showed and the gate admitted.
                action = replace(action, machines=_select(target, await machines.list_machines(deps)))
            if auto_checkpoint and action.kind in DESTRUCTIVE:
                for machine in action.machines:
                    await checkpoints.create(deps, machine.name, description=f"before AI {action.kind}",
                                             actor=actor, prefix="ai")  # fmt: skip
            report.outputs[action.index] = await _run(
                deps, action, profiles=profiles, actor=actor, approval=approval
            )
            report.done.append(action.kind)
    return report


def _single_project(resolved: ResolvedPlan) -> str | None:
    projects = {m.project for a in resolved.actions for m in a.machines}
    projects |= {str(a.params["project"]) for a in resolved.actions if a.params.get("project")}
    return projects.pop() if len(projects) == 1 else None


async def _run(
    deps: MachineDeps,
    action: ResolvedAction,
    *,
    profiles: Mapping[str, Profile],
    actor: str,
    approval: str | None,
    network: NetworkContext | None = None,
) -> Any:
    p, kind = action.params, action.kind
    if kind == "inventory.query":
        return [
            m.model_dump(mode="json") for m in await machines.list_machines(deps, project=p.get("project"))
        ]
    if kind == "machine.create":
        data = {
            k: v
            for k, v in p.items()
            if v is not None and k not in ("network_profile", "disk_gib", "memory_mib")
        }
        data["name"] = p.get("name") or str(p["profile"]).replace("_", "-")
        if p.get("memory_mib"):
            data["memory_mib"] = p["memory_mib"]
        if p.get("disk_gib"):
            data["disk_gib"] = p["disk_gib"]
        request = parse_request(MachineCreate, data)
        result = await fleet.deploy(deps, request, profiles, actor=actor)
        return [o.status for o in result.outcomes]
    if kind in ("machine.start", "machine.stop", "machine.reboot"):
        return [await machines.power(deps, m.name, kind.split(".")[1]) for m in action.machines]  # type: ignore[arg-type]
    if kind == "machine.delete":
        return [await machines.delete(deps, m.name, actor=actor, approval=approval) for m in action.machines]
    if kind == "checkpoint.create":
        return [await checkpoints.create(deps, m.name, p.get("name"), ram=p.get("ram"), actor=actor)
                for m in action.machines]  # fmt: skip
    if kind == "checkpoint.restore":
        return [await checkpoints.restore(deps, m.name, p["checkpoint"], actor=actor, approval=approval)
                for m in action.machines]  # fmt: skip
    if kind == "checkpoint.branch":
        return [await checkpoints.branch(deps, m.name, p["checkpoint"], new_name=p["new_name"], actor=actor)
                for m in action.machines[:1]]  # fmt: skip
    if kind == "checkpoint.delete":
        return [await checkpoints.delete(deps, m.name, p["checkpoint"], actor=actor, approval=approval)
                for m in action.machines]  # fmt: skip
    if kind == "retention.apply":
        from autovibe.checkpoints import prune

        policy = RetentionPolicy.model_validate(p["policy"])
        plans = [
            plan
            for m in action.machines
            for plan in await prune.plan_prune(deps, machine=m.name, override=policy)
        ]
        return await prune.apply(deps, plans, actor=actor)
    if kind == "quota.set":
        from autovibe.usage import quotas

        quotas.set_quota(
            deps.db, p["project"], RESOURCE_METRIC[p["resource"]], float(p["limit"]), p["period"],
            identity=deps.identity, security=deps.security, approval=approval,
        )  # fmt: skip
        return "set"
    if kind == "machine.resize":
        sizes = {k: p.get(k) for k in ("cores", "memory_mib", "disk_gib")}
        return [await machines.resize(deps, m.name, approval=approval, **sizes) for m in action.machines]
    if kind == "usage.query":
        from autovibe.usage import service as usage

        since = str(p.get("since") or "30d")
        try:
            start = deps.now() - parse_ttl(since)
        except ValueError:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        rows = usage.report(
            deps.db, since=start, until=deps.now(), project=p.get("project"), by=p.get("by", "project"),
            identity=deps.identity,
        )  # fmt: skip
        return [r.model_dump(mode="json") for r in rows]
    if kind == "network.apply":
        if network is None:
            raise NotImplementedError("network.apply needs the network context (profiles, resolver)")
        from autovibe.network import service as net

        return [
            await net.apply(deps, network, m.name, p["profile"], approval=approval) for m in action.machines
        ]
    if kind in ("codegen.terraform", "codegen.ansible"):
        return await _codegen(deps, kind, str(p["project"]), profiles=profiles, network=network)
    raise NotImplementedError(f"{kind} is not executable from a plan yet")


async def _codegen(
    deps: MachineDeps,
    kind: str,
    project: str,
    *,
    profiles: Mapping[str, Profile],
    network: NetworkContext | None,
) -> dict[str, Any]:
    """The project's machines as Terraform or Ansible, with the validators' findings (nothing written)."""
    from autovibe.ai.codegen.ansible import render_ansible
    from autovibe.ai.codegen.model import from_inventory
    from autovibe.ai.codegen.terraform import render_terraform
    from autovibe.ai.codegen.validate import validate_ansible, validate_terraform
    from autovibe.network.profiles import SEED_PROFILES

    rows = await machines.list_machines(deps, project=project)
    deployment = from_inventory(project, rows, profiles, network.profiles if network else SEED_PROFILES)
    if kind == "codegen.terraform":
        text = render_terraform(deployment)
        findings = validate_terraform(text)
    else:
        text = render_ansible(deployment)
        findings = validate_ansible(text)
    return {"language": kind.split(".")[1], "code": text, "findings": [str(f) for f in findings]}


__all__ = ["ResolvedPlan", "execute", "injection_signals", "resolve"]
