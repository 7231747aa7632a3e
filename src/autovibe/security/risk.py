"""How risky an action is (pure): a score from 0 to 100 with the reasons that make it up.

The gate turns the score into a decision with two thresholds from the settings: below
``approve_at`` the action runs; from ``approve_at`` it waits for another identity's approval; from
``deny_at`` it is refused. What raises the score:

- the verb: destroying (delete, discarding newer checkpoints, purging), rolling back over the current
  state, stopping machines, changing who may do what;
- breadth: how many machines the action touches;
- the targets: machines labelled ``critical`` or ``production``;
- loosening: a network profile without the host guard or with an open outbound policy, a quota
  raised far above its current value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# Points for the verb alone; actions not listed are reads or harmless changes (0).
VERB: Final[Mapping[str, tuple[int, str]]] = {
    "machine.create": (5, "creates machines"),
    "machine.stop": (10, "stops a machine hard (unsaved work in it is lost)"),
    "machine.shutdown": (5, "shuts a machine down"),
    "machine.reboot": (10, "reboots a machine"),
    "machine.delete": (40, "deletes a machine and its disks for good"),
    "machine.resize": (10, "changes a machine's size"),
    "checkpoint.restore": (30, "rolls a machine back: its current state is lost"),
    "checkpoint.delete": (20, "deletes a checkpoint for good"),
    "checkpoint.branch": (5, "clones a new machine"),
    "retention.apply": (15, "deletes checkpoints a policy does not keep"),
    "quota.set": (5, "changes a quota"),
    "quota.enforce": (30, "may stop a project's machines"),
    "network.apply": (10, "changes a machine's network access"),
    "project.delete": (30, "deletes a project"),
    "user.add": (20, "adds an identity"),
    "user.disable": (10, "disables an identity"),
    "token.create": (25, "creates a credential"),
    "token.revoke": (5, "revokes a credential"),
    "role.bind": (15, "grants a role"),
    "role.unbind": (10, "removes a role"),
    "secret.set": (20, "changes a stored credential"),
    "secret.delete": (20, "deletes a stored credential"),
    "secret.rotate": (20, "re-encrypts every stored credential"),
    "policy.delete": (10, "deletes a retention policy"),
}
HARMLESS_TO_TARGET: Final = frozenset(
    {"machine.create", "checkpoint.create", "checkpoint.branch", "checkpoint.pin"}
)
DESTRUCTIVE: Final = frozenset(
    {"machine.delete", "checkpoint.restore", "checkpoint.delete", "retention.apply", "project.delete"}
)
CRITICAL: Final = 40
PRODUCTION: Final = 30
PER_EXTRA_MACHINE: Final = 3
BREADTH_CAP: Final = 30


@dataclass(frozen=True)
class Subject:
    """What an action touches, as the risk rules need it.

    ``labels``: the labels of each machine it touches. ``details``: action-specific facts such as
    ``discard_newer`` (checkpoints deleted first), ``role`` (granted), ``network_open`` (profile without
    the host guard or with an ACCEPT outbound policy), ``quota_factor`` (new limit / old limit).
    """

    action: str
    machines: Sequence[Mapping[str, str]] = ()
    count: int | None = None  # machines touched, when more than ``machines`` lists
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Risk:
    score: int
    reasons: tuple[str, ...]


def assess(subject: Subject) -> Risk:
    points: list[tuple[int, str]] = []
    if subject.action in VERB:
        points.append(VERB[subject.action])
    details = subject.details
    if details.get("plan_score"):  # an assistant's plan weighs at least as much as its riskiest step
        points.append((int(details["plan_score"]), "the plan's riskiest step"))
    if details.get("discard_newer"):
        points.append((30, f"deletes {details['discard_newer']} newer checkpoint(s) first"))
    if details.get("force"):
        points.append((15, "overrides a pin"))
    if details.get("role") == "admin":
        points.append((30, "grants admin"))
    if details.get("network_open"):
        points.append((40, "loosens network isolation (no host guard or open outbound policy)"))
    factor = details.get("quota_factor")
    if isinstance(factor, int | float) and factor >= 2:
        points.append((min(40, int(10 * factor)), f"raises a quota {factor:g}x"))
    count = subject.count if subject.count is not None else len(subject.machines)
    if count > 1:
        points.append((min(BREADTH_CAP, PER_EXTRA_MACHINE * (count - 1)), f"touches {count} machines"))
    # Labels weigh on what can hurt a machine, not on creating one or taking a checkpoint of it.
    targets = [] if subject.action in HARMLESS_TO_TARGET else subject.machines
    critical = sum(1 for labels in targets if labels.get("critical") == "true")
    production = sum(1 for labels in targets if labels.get("env") == "production" or "production" in labels)
    # Destroying or rolling back a critical machine weighs twice what interrupting it does.
    weight = 1.0 if subject.action in DESTRUCTIVE else 0.5
    if critical:
        points.append((int(CRITICAL * weight), f"{critical} machine(s) labelled critical"))
    if production:
        points.append((int(PRODUCTION * weight), f"{production} machine(s) labelled production"))
    score = min(100, sum(p for p, _ in points))
    return Risk(score, tuple(reason for p, reason in points if p))
