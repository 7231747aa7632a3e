"""PVE tasks: the UPID value object, task status and log models, and the wait loop.

Async PVE calls (create, clone, start, snapshot...) answer with a UPID; the work happens in a
task whose status and log live under ``/nodes/{node}/tasks/{upid}`` on the node named inside the
UPID (SEMANTICS §3).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import field_validator

from autovibe.pve.config import PollPolicy
from autovibe.pve.errors import PveInvalidUpid, PveTaskFailed, PveTaskTimeout
from autovibe.pve.models import PveInt, PveModel

__all__ = [
    "LOG_TAIL_LINES",
    "TaskLogLine",
    "TaskReader",
    "TaskStatus",
    "Upid",
    "wait_for_task",
]

LOG_TAIL_LINES = 20
"""How many trailing log lines a ``PveTaskFailed`` carries."""

# SEMANTICS §3: pid is 8 hex digits, pstart 8 (9 allowed when decoding), starttime 8; node is a
# hostname label; type, id and user contain no ':', whitespace or '/'.
_NODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_PID = re.compile(r"[0-9A-Fa-f]{8}")
_PSTART = re.compile(r"[0-9A-Fa-f]{8,9}")
_WORD = re.compile(r"[^\s:/]*")
_SUCCESS = re.compile(r"OK|WARNINGS: \d+")


@dataclass(frozen=True, slots=True)
class Upid:
    """A parsed task id, ``UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:``.

    ``str(upid)`` gives back the exact text PVE sent, which is what goes into URL paths.
    ``user`` may be a token id (``root@pam!ci``). ``Upid.parse`` raises ``PveInvalidUpid``.
    """

    raw: str
    node: str
    pid: int
    pstart: int
    starttime: datetime
    type: str
    id: str
    user: str

    @classmethod
    def parse(cls, text: str) -> Upid:
        fields = text.split(":")
        if len(fields) != 9 or fields[0] != "UPID" or fields[8] != "":
            raise PveInvalidUpid(f"not a UPID (expected 'UPID:' and 8 colon-terminated fields): {text!r}")
        _, node, pid, pstart, start, kind, ident, user, _ = fields
        checks = (
            (_NODE, node, "node"),
            (_PID, pid, "pid"),
            (_PSTART, pstart, "pstart"),
            (_PID, start, "starttime"),
            (_WORD, kind, "type"),
            (_WORD, ident, "id"),
            (_WORD, user, "user"),
        )
        for pattern, value, name in checks:
            if not pattern.fullmatch(value):
                raise PveInvalidUpid(f"UPID field {name} is malformed: {text!r}")
        if not kind or not user:
            raise PveInvalidUpid(f"UPID lacks a task type or user: {text!r}")
        return cls(
            raw=text,
            node=node,
            pid=int(pid, 16),
            pstart=int(pstart, 16),
            starttime=datetime.fromtimestamp(int(start, 16), tz=UTC),
            type=kind,
            id=ident,
            user=user,
        )

    def __str__(self) -> str:
        return self.raw


class TaskStatus(PveModel):
    """``GET /nodes/{node}/tasks/{upid}/status``. ``exitstatus`` is set once ``status`` is
    ``stopped``: ``OK``, ``WARNINGS: N`` or the error text."""

    upid: str
    node: str
    status: Literal["running", "stopped"]
    exitstatus: str | None = None
    type: str = ""
    id: str = ""
    user: str = ""
    starttime: datetime | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # The VMID in `id` may come back as a JSON number.
        return str(value) if isinstance(value, int) else value

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        """True once the task stopped with ``OK`` or ``WARNINGS: N`` (warnings still succeed)."""
        return self.status == "stopped" and _SUCCESS.fullmatch(self.exitstatus or "") is not None


class TaskLogLine(PveModel):
    """One task log line; ``n`` counts from 1."""

    n: PveInt
    t: str


class TaskReader(Protocol):
    """What ``wait_for_task`` needs from a client."""

    async def task_status(self, upid: Upid | str) -> TaskStatus: ...

    async def task_log_tail(self, upid: Upid | str, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]: ...


async def wait_for_task(
    reader: TaskReader,
    upid: Upid,
    *,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
    progress: Callable[[TaskStatus], None] | None,
    timeout: float,  # noqa: ASYNC109 - measured with the injected clock, not the loop's
    poll: PollPolicy,
) -> TaskStatus:
    """Poll until the task stops; return its final status or raise.

    Calls ``progress`` after every poll. Raises ``PveTaskFailed`` (with the log tail) when the
    exit status is not a success, and ``PveTaskTimeout`` after ``timeout`` seconds by ``clock``.
    """
    started = clock()
    delays = poll.delays()
    while True:
        status = await reader.task_status(upid)
        if progress is not None:
            progress(status)
        if not status.running:
            break
        remaining = started + timeout - clock()
        if remaining <= 0:
            raise PveTaskTimeout(upid.raw, clock() - started)
        await sleep(min(next(delays), remaining))
    if not status.ok:
        tail = await reader.task_log_tail(upid)
        raise PveTaskFailed(
            upid.raw,
            status.exitstatus or "unknown exit status",
            tail,
            method="GET",
            path=f"/nodes/{upid.node}/tasks/{upid.raw}/status",
        )
    return status
