"""Fault-injection rules for the simulator: failing, dropping or slowing API requests, and failing tasks.

A :class:`FaultPlan` is data (it round-trips through ``to_dict``/``from_dict`` for the persisted state and
the ``/_sim/faults`` admin endpoint) plus two seeded random generators, so a run with the same plan, seed
and request sequence injects the same faults. The file format is documented in ``docs/sim-faults.md``.

Example::

    plan = FaultPlan(
        requests=[RequestFault(method="POST", path="/nodes/*/qemu/*/clone", kind="http_503", times=1)],
        tasks=[TaskFault(task_type="qmsnapshot", failure_rate=0.5)],
        seed=7,
    )
    plan.match_request("POST", "/nodes/pve1/qemu/100/clone")  # -> the rule, once
    plan.task_failure("qmsnapshot")  # -> "snapshot failed: simulated storage error" or None
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

FaultKind = Literal["http_500", "http_503", "drop", "latency"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
METHODS = ("*", "GET", "POST", "PUT", "DELETE")  # the only methods the PVE API has
API_PREFIX = "/api2/json"

# The words PVE puts before the reason when such a worker dies (clone: "clone failed: <err>", Qemu.pm).
_TASK_VERBS = {
    "qmclone": "clone",
    "qmcreate": "create",
    "qmdestroy": "destroy",
    "qmstart": "start",
    "qmstop": "stop",
    "qmshutdown": "shutdown",
    "qmsnapshot": "snapshot",
    "qmdelsnapshot": "delete snapshot",
    "qmrollback": "rollback",
    "qmtemplate": "template",
    "qmconfig": "update",
    "qmmove": "move disk",
    "qmigrate": "migration",
    "vzdump": "backup",
}


@dataclass(frozen=True)
class RequestFault:
    """One rule for API requests.

    ``method``: ``GET``/``POST``/``PUT``/``DELETE`` or ``*``. ``path``: an fnmatch glob on the API path
    after ``/api2/json`` (``*`` also matches across ``/``), e.g. ``/nodes/*/qemu/*/config``.
    ``kind``: ``http_500``/``http_503`` answer with that status and ``message`` (the simulator's default
    text when None); ``drop`` closes the connection without an answer; ``latency`` waits ``latency_s``
    wall-clock seconds, then answers normally. ``probability``: chance that a matching request fires.
    ``times``: fire at most this many times (None: no limit; 0: spent).
    """

    method: str = "*"
    path: str = "*"
    kind: FaultKind = "http_500"
    probability: float = 1.0
    latency_s: float = 0.0
    message: str | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        _check_str(self.method, "method")
        object.__setattr__(self, "method", self.method.upper())
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check_str(self.path, "path")
        if not self.path.startswith(("/", "*")):
            raise ValueError(
                f"path: must start with '/' (the API path after {API_PREFIX}), got {self.path!r}"
            )
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(FAULT_KINDS)}, got {self.kind!r}")
        _check_fraction(self.probability, "probability")
        _check_number(self.latency_s, "latency_s")
        if self.latency_s < 0 or (self.kind == "latency") != (self.latency_s > 0):
            raise ValueError(
                f"latency_s: must be > 0 for kind 'latency' and 0 otherwise, got {self.latency_s!r}"
            )
        if self.message is not None:
            _check_str(self.message, "message")
            if self.kind not in ("http_500", "http_503"):
                raise ValueError(f"message: only used by kinds http_500 and http_503, not {self.kind!r}")
        if self.times is not None and (not _is_int(self.times) or self.times < 0):
            raise ValueError(f"times: must be a whole number >= 0 or absent, got {self.times!r}")

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to this request (ignoring probability and ``times``)."""
        return self.method in ("*", method.upper()) and fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True)
class TaskFault:
    """One rule for task workers: a task of ``task_type`` (PVE worker type such as ``qmclone``; an
    fnmatch glob, ``*`` for all) fails with probability ``failure_rate``. Its log then ends with
    ``TASK ERROR: <message>``; without ``message`` it reads like PVE, e.g.
    ``clone failed: simulated storage error``.
    """

    task_type: str
    failure_rate: float
    message: str | None = None

    def __post_init__(self) -> None:
        _check_str(self.task_type, "task_type")
        if not self.task_type:
            raise ValueError("task_type: must not be empty (use '*' for every task)")
        _check_fraction(self.failure_rate, "failure_rate")
        if self.message is not None:
            _check_str(self.message, "message")

    def message_for(self, task_type: str) -> str:
        """The ``TASK ERROR`` text for a failed task of ``task_type``."""
        if self.message is not None:
            return self.message
        return f"{_TASK_VERBS.get(task_type, task_type)} failed: simulated storage error"


class FaultPlan:
    """The simulator's active fault rules; empty (the default) injects nothing.

    Rules are tried in order; the first one that matches *and fires* (its probability draw succeeds and
    it has ``times`` left) wins. Requests and tasks draw from separate generators seeded from ``seed``,
    so API traffic does not shift which tasks fail. Not thread-safe: use it from the simulator's loop.
    """

    def __init__(
        self,
        requests: Sequence[RequestFault] = (),
        tasks: Sequence[TaskFault] = (),
        seed: int = 0,
    ) -> None:
        if not _is_int(seed):
            raise ValueError(f"seed: must be a whole number, got {seed!r}")
        self.requests = tuple(requests)  # fixed: ``_remaining`` counts per position
        self.tasks = tuple(tasks)
        self.seed = seed
        self._remaining = [rule.times for rule in self.requests]
        self._request_rng = random.Random(f"{seed}:requests")
        self._task_rng = random.Random(f"{seed}:tasks")

    def __repr__(self) -> str:
        return f"FaultPlan({self.to_dict()!r})"

    @property
    def is_empty(self) -> bool:
        return not self.requests and not self.tasks

    def match_request(self, method: str, path: str) -> RequestFault | None:
        """The fault to inject into this request, or None. ``path`` is the API path after
        ``/api2/json`` (a leading ``/api2/json`` is stripped too). A rule that fires uses up one of its
        ``times``.
        """
        if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
            path = path[len(API_PREFIX) :] or "/"
        for index, rule in enumerate(self.requests):
            remaining = self._remaining[index]
            if remaining == 0 or not rule.matches(method, path):
                continue
            if not _fires(self._request_rng, rule.probability):
                continue
            if remaining is not None:
                self._remaining[index] = remaining - 1
            return rule
        return None

    def task_failure(self, task_type: str) -> str | None:
        """The ``TASK ERROR`` message if a new task of ``task_type`` should fail, else None."""
        for rule in self.tasks:
            if fnmatch.fnmatchcase(task_type, rule.task_type) and _fires(self._task_rng, rule.failure_rate):
                return rule.message_for(task_type)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the same shape as a fault file. ``times`` is what is *left*, so a saved and
        reloaded plan does not fire spent rules again (the random sequence restarts from ``seed``).
        """
        requests = []
        for rule, remaining in zip(self.requests, self._remaining, strict=True):
            item = _asdict(rule)
            item["times"] = remaining
            requests.append({k: v for k, v in item.items() if v is not None})
        tasks = [{k: v for k, v in _asdict(rule).items() if v is not None} for rule in self.tasks]
        return {"seed": self.seed, "requests": requests, "tasks": tasks}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from the fault-file shape; ``ValueError`` names the offending field, e.g.
        ``requests[1].kind: must be one of http_500, http_503, drop, latency, got 'boom'``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault plan must be an object/table, got {type(data).__name__}")
        _reject_unknown(data, {"seed", "requests", "tasks"}, "")
        requests = [_build(RequestFault, item, f"requests[{i}]") for i, item in _items(data, "requests")]
        tasks = [_build(TaskFault, item, f"tasks[{i}]") for i, item in _items(data, "tasks")]
        return cls(requests, tasks, seed=data.get("seed", 0))


def load_fault_file(path: Path) -> FaultPlan:
    """Read a fault plan from a ``.toml`` or ``.json`` file (see ``docs/sim-faults.md``).

    Raises ``ValueError`` (message starts with the file name) for an unknown extension, a syntax error or
    a bad field, and ``OSError`` when the file cannot be read.
    """
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"unsupported extension {path.suffix!r}; use .toml or .json")
        return FaultPlan.from_dict(data)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors too
        raise ValueError(f"{path}: {exc}") from exc


def _fires(rng: random.Random, probability: float) -> bool:
    # Draw only for real chances, so adding a sure (1.0) or disabled (0.0) rule does not shift the
    # random sequence of the others.
    if probability >= 1.0:
        return True
    if probability <= 0.0:
        return False
    return rng.random() < probability


def _asdict(rule: RequestFault | TaskFault) -> dict[str, Any]:
    return {f.name: getattr(rule, f.name) for f in fields(rule)}


def _items(data: Mapping[str, Any], key: str) -> list[tuple[int, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key}: must be a list (TOML: [[{key}]] tables), got {type(value).__name__}")
    return list(enumerate(value))


_Rule = TypeVar("_Rule", RequestFault, TaskFault)


def _build(cls: type[_Rule], item: Any, where: str) -> _Rule:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be an object/table, got {type(item).__name__}")
    _reject_unknown(item, {f.name for f in fields(cls)}, f"{where}.")
    for field in fields(cls):
        if field.default is MISSING and field.name not in item:
            raise ValueError(f"{where}.{field.name}: missing (it has no default)")
    try:
        return cls(**item)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _reject_unknown(item: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(item) - known)
    if unknown:
        raise ValueError(f"{where}{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string, got {value!r}")


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    return float(value)


def _check_fraction(value: object, name: str) -> None:
    if not 0.0 <= _check_number(value, name) <= 1.0:
        raise ValueError(f"{name}: must be between 0 and 1, got {value!r}")
