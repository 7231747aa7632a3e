"""Run an operation's steps, compensate on failure, and resume operations a dead process left behind.

A step is a named pair of coroutines: ``run`` does the work, ``compensate`` undoes whatever ``run``
may have done — completely, partly or not at all — so it must look before it acts (is the VM there?
is it ours?). Before acting, a step records the facts its compensation needs with
``ctx.remember(...)``; that write-ahead is what makes a kill at any instant recoverable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import structlog

from autovibe.operations.errors import OperationFailed, UnknownOperationKind
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord, OpStatus, StepStatus

D = TypeVar("D")
Progress = Callable[[str, int, int], None]  # (step name, index, total)
_log = structlog.get_logger("autovibe.operations")


@dataclass
class OpContext(Generic[D]):
    """What a step sees: the operation's inputs, its remembered state, and the collaborators."""

    id: str
    params: dict[str, Any]
    state: dict[str, Any]
    deps: D
    journal: Journal

    def remember(self, **facts: Any) -> None:
        """Persist facts *before* acting on them (write-ahead), so a crash can be undone."""
        self.state.update(facts)
        self.journal.remember(self.id, self.state)


@dataclass(frozen=True)
class Step(Generic[D]):
    name: str
    run: Callable[[OpContext[D]], Awaitable[None]]
    compensate: Callable[[OpContext[D]], Awaitable[None]] | None = None


@dataclass(frozen=True)
class OperationKind(Generic[D]):
    """``resume="finish"`` is for operations that cannot be undone (deleting a VM): resume re-runs the
    unfinished steps, which must therefore be idempotent. The default undoes them."""

    kind: str
    steps: Sequence[Step[D]]
    resume: Literal["compensate", "finish"] = "compensate"


KINDS: dict[str, OperationKind[Any]] = {}


def register(kind: OperationKind[D]) -> OperationKind[D]:
    KINDS[kind.kind] = kind
    return kind


class Runner(Generic[D]):
    """Executes operations of any registered kind with one set of collaborators (``deps``)."""

    def __init__(
        self,
        journal: Journal,
        deps: D,
        *,
        compensation_attempts: int = 3,
        retry_delay: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.journal = journal
        self.deps = deps
        self.compensation_attempts = compensation_attempts
        self.retry_delay = retry_delay
        self.sleep = sleep

    async def run(
        self, kind: OperationKind[D], params: dict[str, Any], *, actor: str, progress: Progress | None = None
    ) -> OperationRecord:
        """Run every step; on failure compensate what was done and raise ``OperationFailed``."""
        op_id = self.journal.create(kind.kind, params, [s.name for s in kind.steps], actor=actor)
        ctx = OpContext(op_id, dict(params), {}, self.deps, self.journal)
        total = len(kind.steps)
        for index, step in enumerate(kind.steps):
            if progress is not None:
                progress(step.name, index, total)
            self.journal.step(op_id, index, StepStatus.RUNNING)
            try:
                await step.run(ctx)
            except (Exception, asyncio.CancelledError) as exc:
                await self._fail(kind, ctx, index, exc)
                raise  # _fail raises OperationFailed; this satisfies the type checker
            self.journal.step(op_id, index, StepStatus.DONE, state=ctx.state)
        self.journal.set_status(op_id, OpStatus.COMPLETED)
        if progress is not None:
            progress("done", total, total)
        return self.journal.get(op_id)

    async def _fail(self, kind: OperationKind[D], ctx: OpContext[D], index: int, exc: BaseException) -> None:
        step = kind.steps[index]
        reason = _describe(exc)
        self.journal.step(ctx.id, index, StepStatus.FAILED, state=ctx.state, error=reason)
        _log.warning("operation step failed", operation=ctx.id, step=step.name, error=reason)
        # Ctrl-C during a step must not leave half a machine: undo first, then let the cancel through.
        # An operation that cannot be undone (resume="finish") is left for `ops resume` to complete.
        if kind.resume == "finish":
            self.journal.set_status(ctx.id, OpStatus.STUCK, error=reason)
            compensated = False
        else:
            compensated = await _to_the_end(self._compensate(kind, ctx, upto=index, error=reason))
        if isinstance(exc, asyncio.CancelledError):
            raise exc
        hint = None if compensated else "run `autovibe ops resume` to finish it"
        raise OperationFailed(
            f"{kind.kind} failed at step '{step.name}': {reason}"
            + (" (everything it did was undone)" if compensated else " (undo incomplete)"),
            operation_id=ctx.id,
            step=step.name,
            compensated=compensated,
            hint=hint,
        ) from exc

    async def _compensate(self, kind: OperationKind[D], ctx: OpContext[D], *, upto: int, error: str) -> bool:
        """Undo steps ``upto``..0 newest first. Returns False (status stuck) if an undo keeps failing."""
        self.journal.set_status(ctx.id, OpStatus.COMPENSATING, error=error)
        record = self.journal.get(ctx.id)
        for index in range(upto, -1, -1):
            step = kind.steps[index]
            status = record.steps[index].status
            if step.compensate is None or not (status.touched or index < upto):
                continue
            self.journal.step(ctx.id, index, StepStatus.COMPENSATING)
            if not await self._undo(step, ctx):
                self.journal.set_status(ctx.id, OpStatus.STUCK)
                return False
            self.journal.step(ctx.id, index, StepStatus.COMPENSATED, state=ctx.state)
        self.journal.set_status(ctx.id, OpStatus.COMPENSATED)
        return True

    async def _undo(self, step: Step[D], ctx: OpContext[D]) -> bool:
        assert step.compensate is not None
        for attempt in range(1, self.compensation_attempts + 1):
            try:
                await step.compensate(ctx)
                return True
            except Exception as exc:  # an undo that fails is retried, then left for `ops resume`
                _log.warning(
                    "compensation failed",
                    operation=ctx.id,
                    step=step.name,
                    attempt=attempt,
                    error=_describe(exc),
                )
                if attempt < self.compensation_attempts:
                    await self.sleep(self.retry_delay * attempt)
        return False

    async def resume(self, record: OperationRecord) -> OperationRecord:
        """Drive an orphaned operation to an end: completed if every step was done, else compensated."""
        kind = KINDS.get(record.kind)
        if kind is None:
            raise UnknownOperationKind(f"operation {record.id} is of unknown kind '{record.kind}'")
        if not self.journal.claim(record.id, record.owner):
            return self.journal.get(record.id)
        if all(s.status is StepStatus.DONE for s in record.steps):
            self.journal.set_status(record.id, OpStatus.COMPLETED)
            return self.journal.get(record.id)
        ctx = OpContext(record.id, dict(record.params), dict(record.state), self.deps, self.journal)
        if kind.resume == "finish":
            await self._finish(kind, ctx, record)
        else:
            touched = [s.index for s in record.steps if s.status is not StepStatus.PENDING]
            await self._compensate(
                kind, ctx, upto=max(touched, default=0), error=record.error or "interrupted"
            )
        return self.journal.get(record.id)

    async def _finish(self, kind: OperationKind[D], ctx: OpContext[D], record: OperationRecord) -> None:
        self.journal.set_status(ctx.id, OpStatus.RUNNING)
        for index, step in enumerate(kind.steps):
            if record.steps[index].status is StepStatus.DONE:
                continue
            self.journal.step(ctx.id, index, StepStatus.RUNNING)
            try:
                await step.run(ctx)
            except Exception as exc:
                self.journal.step(ctx.id, index, StepStatus.FAILED, error=_describe(exc))
                self.journal.set_status(ctx.id, OpStatus.STUCK, error=_describe(exc))
                return
            self.journal.step(ctx.id, index, StepStatus.DONE, state=ctx.state)
        self.journal.set_status(ctx.id, OpStatus.COMPLETED)


async def _to_the_end(undo: Coroutine[Any, Any, bool]) -> bool:
    """Await ``undo`` to completion even if this task is cancelled (again) meanwhile; a cancel that
    arrived is delivered afterwards. ``asyncio.shield`` alone would stop *waiting* at the first cancel
    and leave the undo running unattended, to be killed when the event loop closes."""
    task = asyncio.ensure_future(undo)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "interrupted"
    return str(exc) or type(exc).__name__
