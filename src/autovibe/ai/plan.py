"""The plan: what a planner may propose, as typed data. Model output is only ever one of these.

A :class:`Plan` is a list of actions from a fixed catalog, each with typed parameters, plus the
planner's explanation and assumptions, or a ``clarification`` question instead of actions when the
request is too vague to act on. Targets are :class:`Selector` s (names, vmids, or a project narrowed by
profile and labels) resolved against the live inventory before anything is previewed or run.

``Plan.model_json_schema()`` is what hosted planners constrain their output to.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Risk = Literal["low", "medium", "high", "critical"]


class Selector(BaseModel):
    """Which machines an action targets: exact names or vmids, or every machine of a project (narrowed
    by profile and labels). An empty selector selects nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    names: tuple[str, ...] = ()
    vmids: tuple[int, ...] = ()
    project: str | None = None
    profile: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.names or self.vmids or self.project)


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InventoryQuery(_Action):
    kind: Literal["inventory.query"] = "inventory.query"
    project: str | None = None


class UsageQuery(_Action):
    kind: Literal["usage.query"] = "usage.query"
    project: str | None = None
    since: str | None = None  # a duration such as "7d", or an ISO date
    by: Literal["project", "machine"] = "project"


class MachineCreate(_Action):
    kind: Literal["machine.create"] = "machine.create"
    profile: str
    project: str
    count: Annotated[int, Field(ge=1, le=500)] = 1
    name: str | None = None
    node: str | None = None
    cores: Annotated[int | None, Field(ge=1, le=128)] = None
    memory_mib: Annotated[int | None, Field(ge=64)] = None
    disk_gib: Annotated[int | None, Field(ge=1)] = None
    network_profile: str | None = None
    ttl: str | None = None  # "8h", "2d"
    start: bool = True


class MachinePower(_Action):
    kind: Literal["machine.start", "machine.stop", "machine.reboot"]
    target: Selector


class MachineDelete(_Action):
    kind: Literal["machine.delete"] = "machine.delete"
    target: Selector


class MachineResize(_Action):
    kind: Literal["machine.resize"] = "machine.resize"
    target: Selector
    cores: Annotated[int | None, Field(ge=1, le=128)] = None
    memory_mib: Annotated[int | None, Field(ge=64)] = None
    disk_gib: Annotated[int | None, Field(ge=1)] = None


class CheckpointCreate(_Action):
    kind: Literal["checkpoint.create"] = "checkpoint.create"
    target: Selector
    name: str | None = None
    ram: bool | None = None  # None: with RAM when the machine runs


class CheckpointRestore(_Action):
    kind: Literal["checkpoint.restore"] = "checkpoint.restore"
    target: Selector
    checkpoint: str


class CheckpointBranch(_Action):
    kind: Literal["checkpoint.branch"] = "checkpoint.branch"
    target: Selector
    checkpoint: str
    new_name: str
    count: Annotated[int, Field(ge=1, le=50)] = 1


class CheckpointDelete(_Action):
    kind: Literal["checkpoint.delete"] = "checkpoint.delete"
    target: Selector
    checkpoint: str


class RetentionApply(_Action):
    kind: Literal["retention.apply"] = "retention.apply"
    target: Selector
    # restic's keep words, as in RetentionPolicy: {"last": 3, "daily": 7, "within": "2d"}
    policy: dict[str, int | str]


class NetworkApply(_Action):
    kind: Literal["network.apply"] = "network.apply"
    target: Selector
    profile: str


class QuotaSet(_Action):
    kind: Literal["quota.set"] = "quota.set"
    project: str
    resource: Literal["cpu_hours", "memory_gib_hours", "network_gb", "storage_gb"]
    limit: Annotated[float, Field(gt=0)]
    period: Literal["day", "week", "month"] = "month"


class CodegenTerraform(_Action):
    kind: Literal["codegen.terraform"] = "codegen.terraform"
    project: str


class CodegenAnsible(_Action):
    kind: Literal["codegen.ansible"] = "codegen.ansible"
    project: str


Action = Annotated[
    InventoryQuery | UsageQuery | MachineCreate | MachinePower | MachineDelete | MachineResize
    | CheckpointCreate | CheckpointRestore | CheckpointBranch | CheckpointDelete | RetentionApply
    | NetworkApply | QuotaSet | CodegenTerraform | CodegenAnsible,
    Field(discriminator="kind"),
]  # fmt: skip

ACTION_KINDS: tuple[str, ...] = (
    "inventory.query", "usage.query", "machine.create", "machine.start", "machine.stop", "machine.reboot",
    "machine.delete", "machine.resize", "checkpoint.create", "checkpoint.restore", "checkpoint.branch",
    "checkpoint.delete", "retention.apply", "network.apply", "quota.set", "codegen.terraform",
    "codegen.ansible",
)  # fmt: skip
READ_ONLY: frozenset[str] = frozenset(
    {"inventory.query", "usage.query", "codegen.terraform", "codegen.ansible"}
)
DESTRUCTIVE: frozenset[str] = frozenset(
    {"machine.delete", "machine.stop", "checkpoint.restore", "checkpoint.delete", "retention.apply"}
)


class Plan(BaseModel):
    """What a planner proposes. Either ``actions`` (possibly empty for a pure question) or a
    ``clarification`` question, never both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: list[Action] = Field(default_factory=list)
    explanation: str = ""
    assumptions: list[str] = Field(default_factory=list)
    clarification: str | None = None

    @model_validator(mode="after")
    def _either_actions_or_question(self) -> Plan:
        if self.clarification and self.actions:
            raise ValueError("a plan either asks a clarification question or proposes actions, not both")
        return self

    def digest(self) -> str:
        """A hash of the plan's content: an approval is bound to exactly this plan."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def parse_plan(data: Any) -> Plan:
    """Validate model output as a :class:`Plan`; anything else is a ``ValueError`` naming the problem."""
    from pydantic import ValidationError

    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "plan"
        raise ValueError(f"the planner's output is not a valid plan: {where}: {first['msg']}") from None
