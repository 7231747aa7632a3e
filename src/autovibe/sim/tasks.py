"""Asynchronous PVE tasks (workers) on the simulated clock.

A task is a list of phases. A ``wait`` phase takes fixed simulated seconds; a ``copy`` phase moves
bytes through one or more storage locations, and every location's bandwidth is shared equally by the
copies running through it (a copy runs at the slowest of its shares). That is the whole resource
model, documented in docs/simulator.md so a benchmark can compute the ideal makespan of a workload.

The engine is lazy: ``advance(now)`` replays everything that happened up to ``now``, finishing
phases in time order. A task's effects are applied by its ``TaskKind``: ``begin`` runs when the
worker forks (its checks fail the task at once, like PVE's in-worker checks), ``finish`` when the last
phase ends, ``abort`` undoes ``begin`` when the task fails (injected faults included).

A worker that does several things one after the other (a backup job saving guest after guest) marks
phases with a ``step`` name: when such a phase ends, the kind's ``step`` runs and may queue the next
phases, decided only then (which guest comes next, whether it is locked). A ``gate`` phase waits for a
resource another task holds: it counts down like a wait (its timeout), and ends early as soon as the
kind's ``ready`` says the resource is free; either way its ``step`` runs next.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from autovibe.sim.errors import TaskError

if TYPE_CHECKING:
    from autovibe.sim.cluster import Cluster


@dataclass
class Phase:
    kind: str  # "wait" | "copy" | "gate"
    remaining: float  # seconds (wait, gate timeout) or bytes (copy)
    locations: list[str] = field(default_factory=list)  # storage locations a copy moves through
    step: str | None = None  # the kind's ``step`` runs with this name when the phase ends


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    pid: int
    pstart: int
    kind: str
    args: dict[str, Any]
    phases: list[Phase] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    status: str = "running"
    exitstatus: str | None = None
    endtime: int | None = None
    injected_failure: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        phases = [Phase(**p) for p in data.pop("phases")]
        return cls(**data, phases=phases)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Begin = Callable[["Cluster", Task], list[Phase]]
Finish = Callable[["Cluster", Task], None]
Abort = Callable[["Cluster", Task, str], None]
Step = Callable[["Cluster", Task, str], list[Phase]]
Ready = Callable[["Cluster", Task, str], bool]


def _no_finish(cluster: Cluster, task: Task) -> None:
    return None


def _no_abort(cluster: Cluster, task: Task, message: str) -> None:
    return None


def _no_step(cluster: Cluster, task: Task, name: str) -> list[Phase]:
    return []


def _always_ready(cluster: Cluster, task: Task, name: str) -> bool:
    return True


@dataclass(frozen=True)
class TaskKind:
    """What a worker type does. ``name`` keys it for persistence; ``type`` is PVE's worker type.

    ``step`` runs when a phase carrying a step name ends and returns the phases to run next (a
    ``TaskError`` fails the task); ``ready`` tells whether a ``gate`` phase may open now.
    """

    name: str
    type: str
    begin: Begin
    finish: Finish = _no_finish
    abort: Abort = _no_abort
    step: Step = _no_step
    ready: Ready = _always_ready


TASK_KINDS: dict[str, TaskKind] = {}


def task_kind(kind: TaskKind) -> TaskKind:
    if kind.name in TASK_KINDS:
        raise RuntimeError(f"duplicate task kind {kind.name}")
    TASK_KINDS[kind.name] = kind
    return kind


# One copy stream (qemu-img, a migration, RAM state) cannot go faster than this, however idle its storage:
# that is why parallel clones pay off until the storages' shared bandwidth becomes the limit.
COPY_STREAM_LIMIT = 200 * 1024**2  # bytes/s

# Like PVE's task archive, keep a bounded history: the newest finished tasks and every running one.
KEEP_FINISHED = 1000


def make_upid(node: str, pid: int, pstart: int, starttime: int, wtype: str, wid: str, user: str) -> str:
    """``UPID:node:PID:PSTART:STARTTIME:type:id:user:`` — hex fields, trailing colon (SEMANTICS §3)."""
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{wtype}:{wid}:{user}:"


class TaskEngine:
    """All tasks of the cluster, and the replay of simulated time."""

    def __init__(self, tasks: list[Task] | None = None, time: float = 0.0, next_pid: int | None = None):
        self.tasks: dict[str, Task] = {t.upid: t for t in tasks or []}
        self.time = time
        self.next_pid = next_pid or 0x2F000 + int.from_bytes(os.urandom(2), "big")

    def spawn(
        self, cluster: Cluster, kind: TaskKind, *, node: str, wid: str, user: str, args: dict[str, Any]
    ) -> Task:
        """Fork a worker: returns the task (its UPID goes back to the client at once)."""
        start = int(self.time)
        self.next_pid += 1 + len(self.tasks) % 7
        pstart = int(self.time * 100) % 0xFFFFFFFF  # clock ticks since "boot", as /proc/pid/stat gives
        upid = make_upid(node, self.next_pid, pstart, start, kind.type, wid, user)
        while upid in self.tasks:  # two tasks in the same second by the same pid cannot exist
            self.next_pid += 1
            upid = make_upid(node, self.next_pid, pstart, start, kind.type, wid, user)
        task = Task(upid, node, kind.type, wid, user, start, self.next_pid, pstart, kind.name, args)
        self._prune()
        task.injected_failure = cluster.faults.task_failure(kind.type)
        self.tasks[upid] = task
        try:
            task.phases = kind.begin(cluster, task)
        except TaskError as exc:
            self._end(task, exc.message)
            return task
        if not task.phases:
            self._complete(cluster, task)
        return task

    def _prune(self) -> None:
        finished = [t for t in self.tasks.values() if not t.running]
        if len(finished) > KEEP_FINISHED:
            finished.sort(key=lambda t: (t.endtime or 0, t.upid))
            for task in finished[: len(finished) - KEEP_FINISHED]:
                del self.tasks[task.upid]

    def advance(self, cluster: Cluster, now: float) -> None:
        """Replay simulated time up to ``now``: progress phases, finish tasks in time order."""
        self._open_gates(cluster)
        while now > self.time:
            running = [t for t in self.tasks.values() if t.running and t.phases]
            if not running:
                break
            rates = self._rates(running, cluster.location_bandwidth)
            step = min(t.phases[0].remaining / rates[t.upid] for t in running)
            step = min(step, now - self.time)
            self.time += step
            for task in running:
                if not task.running or not task.phases:
                    continue
                phase = task.phases[0]
                phase.remaining -= rates[task.upid] * step
                if phase.remaining <= 1e-6 * max(1.0, rates[task.upid]):
                    task.phases.pop(0)
                    self._phase_done(cluster, task, phase)
            self._open_gates(cluster)
        self.time = max(self.time, now)

    def _phase_done(self, cluster: Cluster, task: Task, phase: Phase) -> None:
        """After ``phase`` left ``task``: run its step (which may queue phases), complete when none remain."""
        if phase.step is not None:
            kind = TASK_KINDS[task.kind]
            try:
                task.phases[:0] = kind.step(cluster, task, phase.step)
            except TaskError as exc:
                kind.abort(cluster, task, exc.message)
                self._end(task, exc.message)
                return
        if not task.phases:
            self._complete(cluster, task)

    def _open_gates(self, cluster: Cluster) -> None:
        """Open the gates whose resource is free now, oldest task first (one opening may close others)."""
        while True:
            gated = [t for t in self.tasks.values() if t.running and t.phases and t.phases[0].kind == "gate"]
            gated.sort(key=lambda t: (t.starttime, t.pstart, t.pid))
            for task in gated:
                phase = task.phases[0]
                if TASK_KINDS[task.kind].ready(cluster, task, phase.step or ""):
                    task.phases.pop(0)
                    self._phase_done(cluster, task, phase)
                    break
            else:
                return

    @staticmethod
    def _rates(running: list[Task], bandwidth: Callable[[str], float]) -> dict[str, float]:
        sharers: dict[str, int] = {}
        for task in running:
            phase = task.phases[0]
            if phase.kind == "copy":
                for loc in phase.locations:
                    sharers[loc] = sharers.get(loc, 0) + 1
        return {t.upid: _phase_rate(t.phases[0], sharers, bandwidth) for t in running}

    def _complete(self, cluster: Cluster, task: Task) -> None:
        kind = TASK_KINDS[task.kind]
        if task.injected_failure:
            kind.abort(cluster, task, task.injected_failure)
            self._end(task, task.injected_failure)
            return
        try:
            kind.finish(cluster, task)
        except TaskError as exc:
            kind.abort(cluster, task, exc.message)
            self._end(task, exc.message)
            return
        self._end(task, None)

    def _end(self, task: Task, error: str | None) -> None:
        task.phases = []
        task.status = "stopped"
        task.endtime = int(self.time)
        warnings = sum(1 for line in task.log if line.startswith("WARN: "))
        if error is not None:
            task.exitstatus = error
            task.log.append(f"TASK ERROR: {error}")
        elif warnings:
            task.exitstatus = f"WARNINGS: {warnings}"
            task.log.append(f"TASK WARNINGS: {warnings}")
        else:
            task.exitstatus = "OK"
            task.log.append("TASK OK")

    def stop(self, cluster: Cluster, upid: str) -> None:
        """``DELETE /nodes/{node}/tasks/{upid}``: the worker gets SIGTERM (SEMANTICS §3)."""
        task = self.tasks[upid]
        if task.running:
            TASK_KINDS[task.kind].abort(cluster, task, "received interrupt")
            self._end(task, "received interrupt")
            self._open_gates(cluster)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "next_pid": self.next_pid,
            "tasks": [t.to_dict() for t in self.tasks.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEngine:
        tasks = [Task.from_dict(t) for t in data["tasks"]]
        return cls(tasks, time=float(data["time"]), next_pid=int(data["next_pid"]))


def _phase_rate(phase: Phase, sharers: dict[str, int], bandwidth: Callable[[str], float]) -> float:
    """Seconds per second for waits and gates; for copies the stream limit or the slowest equal share of
    the locations it uses, whichever is smaller."""
    if phase.kind != "copy" or not phase.locations:
        return 1.0
    return min(COPY_STREAM_LIMIT, *(bandwidth(loc) / sharers[loc] for loc in phase.locations))
