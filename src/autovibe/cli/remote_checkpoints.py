"""The remote halves of the checkpoint, policy and schedule commands (see :mod:`autovibe.cli.remote`).

Each function asks the hub (``/api/v1/machines/{ref}/checkpoints...`` and ``/api/v1/retention/...``)
and rebuilds what the local service call returns (``CheckpointTree``, ``Created``, ``Restored``,
``PruneResult``, ``PolicyRead``...), so the commands render both the same way. Create, restore, branch,
delete and a real prune are hub jobs followed over Server-Sent Events; a job that failed inside a
journaled operation raises ``OperationFailed`` with that operation's id, as the local run does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autovibe.cli.remote import connect, segment

if TYPE_CHECKING:
    from autovibe.checkpoints.models import Checkpoint, CheckpointDetail, CheckpointTree
    from autovibe.checkpoints.policies import PolicyRead
    from autovibe.checkpoints.prune import PruneResult
    from autovibe.checkpoints.retention import RetentionPolicy
    from autovibe.checkpoints.schedules import ScheduleRead
    from autovibe.checkpoints.service import Created, Restored
    from autovibe.cli.remote import HubClient
    from autovibe.machines.models import MachineRead
    from autovibe.settings import Settings

COMMANDS: frozenset[str] = frozenset(
    {
        "checkpoint create", "checkpoint list", "checkpoint show", "checkpoint restore",
        "checkpoint branch", "checkpoint delete", "checkpoint pin", "checkpoint unpin", "checkpoint prune",
        "checkpoint policy set", "checkpoint policy list", "checkpoint policy show",
        "checkpoint policy delete", "checkpoint policy attach", "checkpoint policy detach",
        "checkpoint schedule set", "checkpoint schedule list", "checkpoint schedule remove",
    }
)  # fmt: skip
"""Command paths (``"checkpoint list"``) that work with ``--hub``."""

StepCallback = Callable[[str, int, int], None]
"""A journal-style progress callback: (step, index, total)."""


def _path(machine: str, name: str | None = None) -> str:
    path = f"/machines/{segment(machine)}/checkpoints"
    return path if name is None else f"{path}/{segment(name)}"


def _job(
    hub: HubClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: dict[str, Any] | None = None,
    steps: StepCallback | None = None,
) -> dict[str, Any]:
    """Submit a hub job, follow it to its end (Ctrl-C cancels it) and return its result. ``steps`` gets
    each ``step`` event; a failure raises the job's error kind, ``OperationFailed`` when an operation
    ran."""

    def progress(kind: str, data: dict[str, Any]) -> None:
        if steps is not None and kind == "step" and "step" in data:
            steps(str(data["step"]), int(data.get("index") or 0), int(data.get("total") or 0))

    job = hub.submit_and_follow(method, path, json_body=body, params=params, progress=progress)
    return dict(job.get("result") or {})


def _machine_name(hub: HubClient, ref: str) -> str:
    """The machine's name (``ref`` may be its vmid); an unknown one is the hub's not-found error."""
    return str(hub.get(f"/machines/{segment(ref)}")["name"])


# ---- checkpoints ---------------------------------------------------------------------------------
def create(
    settings: Settings, machine: str, name: str | None, *, ram: bool | None, description: str, pin: bool
) -> tuple[str, Created]:
    from autovibe.checkpoints.models import Checkpoint
    from autovibe.checkpoints.service import Created

    body = {"name": name, "ram": ram, "description": description, "pin": pin}
    with connect(settings) as hub:
        result = _job(hub, "POST", _path(machine), body={k: v for k, v in body.items() if v is not None})
    made = Created(
        checkpoint=Checkpoint.model_validate(result["checkpoint"]),
        operation_id=str(result["operation_id"]),
        ram_skipped=bool(result.get("ram_skipped")),
    )
    return str(result["machine"]), made


def tree(settings: Settings, machine: str) -> CheckpointTree:
    from autovibe.checkpoints.models import Checkpoint, CheckpointTree

    with connect(settings) as hub:
        data = hub.get(_path(machine))
    return CheckpointTree(
        machine=str(data["machine"]),
        vmid=int(data["vmid"]),
        node=str(data["node"]),
        status=str(data["status"]),
        here=data.get("here"),
        checkpoints=tuple(Checkpoint.model_validate(c) for c in data.get("checkpoints") or ()),
    )


def show(settings: Settings, machine: str, name: str) -> CheckpointDetail:
    from autovibe.checkpoints.models import CheckpointDetail

    with connect(settings) as hub:
        return CheckpointDetail.model_validate(hub.get(_path(machine, name)))


def would_discard(settings: Settings, machine: str, name: str) -> list[str]:
    """What ``restore --discard-newer`` would delete, to confirm: empty when nothing is in the way or
    the restore would refuse anyway (a protected checkpoint: the restore says why)."""
    with connect(settings) as hub:
        found = hub.get(f"{_path(machine, name)}/blockers")
    return [] if found.get("protected") else [str(n) for n in found.get("newer") or ()]


def restore(
    settings: Settings, machine: str, name: str, *, start: bool, discard_newer: bool, approval: str | None
) -> Restored:
    from autovibe.checkpoints.service import Restored

    body: dict[str, Any] = {"start": start, "discard_newer": discard_newer}
    if approval is not None:
        body["approval"] = approval
    with connect(settings) as hub:
        result = _job(hub, "POST", f"{_path(machine, name)}/restore", body=body)
    return Restored(
        machine=str(result["machine"]),
        checkpoint=str(result["restored"]),
        status=str(result["status"]),
        discarded=tuple(str(n) for n in result.get("discarded") or ()),
        operation_id=str(result["operation_id"]),
    )


def branch(
    settings: Settings,
    machine: str,
    name: str,
    *,
    new_name: str,
    project: str | None,
    node: str | None,
    start: bool,
    steps: StepCallback | None,
) -> tuple[str, MachineRead]:
    """The branch as a hub job (each step of its clone an SSE event fed to ``steps``): the operation's
    id and the new machine."""
    from autovibe.machines.models import MachineRead

    body: dict[str, Any] = {"new_name": new_name, "start": start}
    body.update({k: v for k, v in (("project", project), ("node", node)) if v is not None})
    with connect(settings) as hub:
        result = _job(hub, "POST", f"{_path(machine, name)}/branch", body=body, steps=steps)
    return str(result["operation_id"]), MachineRead.model_validate(result["machine"])


def delete(
    settings: Settings, machine: str, name: str, *, force: bool, approval: str | None
) -> tuple[str, str]:
    """Delete as a hub job: the machine's name and the operation's id."""
    params = {"force": "true" if force else None, "approval": approval}
    with connect(settings) as hub:
        result = _job(hub, "DELETE", _path(machine, name), params=params)
    return str(result["machine"]), str(result["operation_id"])


def pin(settings: Settings, machine: str, name: str, *, pinned: bool) -> tuple[str, Checkpoint]:
    from autovibe.checkpoints.models import Checkpoint

    with connect(settings) as hub:
        owner = _machine_name(hub, machine)
        path = f"{_path(owner, name)}/pin"
        marked = hub.put(path) if pinned else hub.delete(path)
    return owner, Checkpoint.model_validate(marked)


# ---- prune ---------------------------------------------------------------------------------------
def prune(
    settings: Settings,
    machine: str | None,
    project: str | None,
    override: RetentionPolicy | None,
    *,
    dry_run: bool,
    lock_wait: float,
    steps: StepCallback | None = None,
) -> PruneResult:
    """A dry run is the hub's plan at once; a real prune is a job whose steps feed ``steps``."""
    from autovibe.checkpoints.prune import MachinePlan, PruneResult

    body: dict[str, Any] = {"dry_run": dry_run, "lock_wait_s": lock_wait}
    body.update({k: v for k, v in (("machine", machine), ("project", project)) if v is not None})
    if override is not None:
        body["rules"] = override.model_dump(mode="json")
    with connect(settings) as hub:
        if dry_run:
            report = hub.post("/retention/prune", body)
        else:
            report = _job(hub, "POST", "/retention/prune", body=body, steps=steps)
    plans = tuple(MachinePlan.model_validate(plan) for plan in report.get("machines") or ())
    operation_id = report.get("operation_id")
    return PruneResult(plans, str(operation_id) if operation_id else None)


# ---- policies ------------------------------------------------------------------------------------
def _policy_read(data: Any) -> PolicyRead:
    from autovibe.checkpoints.policies import PolicyRead

    return PolicyRead.model_validate(data)


def policy_set(settings: Settings, name: str, rules: RetentionPolicy, description: str) -> PolicyRead:
    with connect(settings) as hub:
        body = {"rules": rules.model_dump(mode="json"), "description": description}
        return _policy_read(hub.put(f"/retention/policies/{segment(name)}", body))


def policy_list(settings: Settings) -> list[PolicyRead]:
    with connect(settings) as hub:
        return [_policy_read(item) for item in hub.get("/retention/policies")]


def policy_show(settings: Settings, name: str) -> PolicyRead:
    with connect(settings) as hub:
        return _policy_read(hub.get(f"/retention/policies/{segment(name)}"))


def policy_delete(settings: Settings, name: str) -> None:
    with connect(settings) as hub:
        hub.delete(f"/retention/policies/{segment(name)}")


def _scope_path(project: str | None, machine: str | None, what: str, *, refusal: str) -> str:
    """``/retention/projects/P/policy`` or ``/retention/machines/M/policy`` (``what``); neither or both
    given is the local command's own refusal (exit 2)."""
    from autovibe.checkpoints.errors import InvalidCheckpointRequest

    if (project is None) == (machine is None):
        raise InvalidCheckpointRequest(refusal)
    if project is not None:
        return f"/retention/projects/{segment(project)}/{what}"
    assert machine is not None
    return f"/retention/machines/{segment(machine)}/{what}"


POLICY_SCOPE = "give exactly one of --project or --machine"  # policies.attach/detach's words
SCHEDULE_SCOPE = "give a machine or --project (exactly one)"  # schedules.set_schedule's words


def policy_attach(settings: Settings, name: str, *, project: str | None, machine: str | None) -> PolicyRead:
    path = _scope_path(project, machine, "policy", refusal=POLICY_SCOPE)
    with connect(settings) as hub:
        return _policy_read(hub.put(path, {"policy": name}))


def policy_detach(settings: Settings, *, project: str | None, machine: str | None) -> None:
    path = _scope_path(project, machine, "policy", refusal=POLICY_SCOPE)
    with connect(settings) as hub:
        hub.delete(path)


# ---- schedules -----------------------------------------------------------------------------------
def _schedule_read(data: Any) -> ScheduleRead:
    from autovibe.checkpoints.schedules import ScheduleRead

    return ScheduleRead.model_validate(data)


def schedule_set(
    settings: Settings, *, every_s: int, project: str | None, machine: str | None, ram: bool, prune: bool
) -> ScheduleRead:
    path = _scope_path(project, machine, "schedule", refusal=SCHEDULE_SCOPE)
    with connect(settings) as hub:
        return _schedule_read(hub.put(path, {"every": _duration(every_s), "ram": ram, "prune": prune}))


def _duration(seconds: int) -> str:
    """``90000`` -> ``1d1h``: the hub's duration text, in the largest units (each part stays small)."""
    parts, left = [], seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def schedule_list(settings: Settings) -> list[ScheduleRead]:
    with connect(settings) as hub:
        return [_schedule_read(item) for item in hub.get("/retention/schedules")]


def schedule_remove(settings: Settings, *, project: str | None, machine: str | None) -> bool:
    path = _scope_path(project, machine, "schedule", refusal=SCHEDULE_SCOPE)
    with connect(settings) as hub:
        return bool(hub.delete(path)["removed"])
