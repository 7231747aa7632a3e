"""Lock-aware scheduling of PVE tasks: caps per node and per template, one task per VM at a time,
retries with jitter while PVE says a config is locked, and a VMID allocator that survives races.

PVE's ``/cluster/nextid`` only suggests an id (SEMANTICS §7): two deploys asking at once get the same
answer and the second clone fails "config file already exists". The allocator hands each caller in this
process a different id, and callers that still collide (another client) ask again.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from autovibe.pve import (
    DEFAULT_POLL,
    PollPolicy,
    PveApiError,
    PveClient,
    PveLocked,
    PveTaskFailed,
    TaskStatus,
)

T = TypeVar("T")
_log = structlog.get_logger("autovibe.machines")
_DEADLINE_SLACK_S = 1e-6
"""Waits this close to the lock deadline count as reaching it (float sums of pauses drift by ULPs)."""
# PVE's words for "someone else holds this VM right now": the config lock and the file lock.
_LOCKED_RE = re.compile(r"VM is locked \(|CT is locked \(|can't lock file")
_LOCK_WORDS_RE = re.compile(r"(?:VM|CT) is locked \([^)]*\)|can't lock file '[^']*'")


@dataclass(frozen=True)
class TaskLimits:
    """How hard autovibe may push PVE. ``per_node`` defaults to PVE's own worker limit (max_workers=4)."""

    per_node: int = 4
    # 10 streams x 200 MiB/s saturate a 2 GB/s Ceph-like shared storage; the slack above 10 keeps it
    # busy across the gaps between one clone ending and the next starting (bench/fleet_deploy.py).
    per_template: int = 14
    lock_deadline_s: float = 120.0
    lock_retry_s: float = 0.5


DEFAULT_LIMITS = TaskLimits()


def lock_reason(exc: BaseException) -> str:
    """PVE's own words for a lock (``VM is locked (backup)``), without the task or request around them."""
    text = str(exc)
    found = _LOCK_WORDS_RE.search(text)
    return found.group(0) if found else (text.splitlines() or [""])[0]


def is_lock_conflict(exc: BaseException) -> bool:
    if isinstance(exc, PveLocked):
        return True
    if isinstance(exc, PveTaskFailed):
        return bool(_LOCKED_RE.search(exc.exitstatus or ""))
    return isinstance(exc, PveApiError) and bool(_LOCKED_RE.search(exc.message))


@dataclass
class TaskGate:
    """Shared by every operation of one process talking to one cluster."""

    limits: TaskLimits = DEFAULT_LIMITS
    poll: PollPolicy = DEFAULT_POLL  # how often a waiting task's status is asked for
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    # Told (action, PVE's reason, seconds until the next try) each time a locked VM is waited for, so
    # a face can say what it is waiting for; the deadline is ``limits.lock_deadline_s``.
    on_wait: Callable[[str, str, float], None] | None = None
    _nodes: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _templates: dict[int, asyncio.Semaphore] = field(default_factory=dict)
    _vms: dict[int, asyncio.Lock] = field(default_factory=dict)

    @asynccontextmanager
    async def slot(self, node: str, vmid: int, *, template: int | None = None) -> AsyncIterator[None]:
        """Hold a task slot on ``node`` (and ``template``), and the VM's own turn."""
        vm_lock = self._vms.setdefault(vmid, asyncio.Lock())
        node_sem = self._nodes.setdefault(node, asyncio.Semaphore(self.limits.per_node))
        async with vm_lock, node_sem:
            if template is None:
                yield
                return
            async with self._templates.setdefault(template, asyncio.Semaphore(self.limits.per_template)):
                yield

    async def retry_locked(self, action: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run ``action``; while PVE answers that the VM is locked, wait with jitter and try again.

        The waits add up to ``limits.lock_deadline_s`` at most: the last one is cut short so that the
        final try comes at the deadline (not one jittered pause before it); after that PVE's error is
        re-raised.
        """
        waited, delay = 0.0, self.limits.lock_retry_s
        while True:
            try:
                return await action()
            except (PveApiError, PveTaskFailed) as exc:
                remaining = self.limits.lock_deadline_s - waited
                if not is_lock_conflict(exc) or remaining <= _DEADLINE_SLACK_S:
                    raise
                pause = min(delay * (0.5 + self.rng.random()), remaining)
                reason = lock_reason(exc)
            _log.info("waiting for a locked VM", action=what, reason=reason, retry_in_s=round(pause, 2))
            if self.on_wait is not None:
                self.on_wait(what, reason, pause)
            await self.sleep(pause)
            waited += pause
            delay = min(delay * 2, 8.0)

    async def task(
        self,
        pve: PveClient,
        *,
        node: str,
        vmid: int,
        start: Callable[[], Awaitable[str]],
        what: str,
        template: int | None = None,
        progress: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Start a PVE task in a slot and wait for it; lock conflicts (sync or in-task) are retried."""

        async def attempt() -> TaskStatus:
            async with self.slot(node, vmid, template=template):
                upid = await start()
                return await pve.wait_task(upid, progress=progress, poll=self.poll)

        return await self.retry_locked(attempt, what=what)


@dataclass
class VmidAllocator:
    """Hands out VMIDs no other caller in this process holds; ``/cluster/nextid`` is only the hint."""

    _held: set[int] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def take(self, pve: PveClient, *, avoid: set[int] | None = None) -> int:
        async with self._lock:
            vmid = await pve.next_vmid()
            while vmid in self._held or (avoid and vmid in avoid):
                vmid += 1
            self._held.add(vmid)
            return vmid

    def release(self, vmid: int) -> None:
        self._held.discard(vmid)
