"""The runner journals every step, undoes newest-first on failure, and resumes what a dead process left."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from autovibe.operations.errors import OperationFailed
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus, StepStatus
from autovibe.operations.runner import OpContext, OperationKind, Runner, Step, register
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Operation


class World:
    """The outside world the steps change: a list of created things, plus switches to make steps fail."""

    def __init__(self) -> None:
        self.things: list[str] = []
        self.log: list[str] = []
        self.fail_at: str | None = None
        self.undo_failures = 0


def step(name: str) -> Step[World]:
    async def run(ctx: OpContext[World]) -> None:
        ctx.remember(**{name: f"{name}-thing"})
        ctx.deps.log.append(f"run {name}")
        if ctx.deps.fail_at == name:
            raise RuntimeError(f"{name} broke")
        ctx.deps.things.append(f"{name}-thing")

    async def undo(ctx: OpContext[World]) -> None:
        ctx.deps.log.append(f"undo {name}")
        if ctx.deps.undo_failures:
            ctx.deps.undo_failures -= 1
            raise RuntimeError("undo broke")
        thing = ctx.state.get(name)
        if thing in ctx.deps.things:  # look before acting: the run may never have got this far
            ctx.deps.things.remove(thing)

    return Step(name, run, undo)


KIND = register(OperationKind("test.three", [step("one"), step("two"), step("three")]))


def dead_owner() -> str:
    """The owner string of a process on this host that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:0"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    db = Database.open(sqlite_url(tmp_path / "ops.db"))
    yield Journal(db)
    db.dispose()


async def no_sleep(_: float) -> None:
    return None


async def test_success_journals_every_step(journal: Journal) -> None:
    world = World()
    seen: list[str] = []
    record = await Runner(journal, world).run(
        KIND, {"x": 1}, actor="tester", progress=lambda n, i, t: seen.append(n)
    )
    assert record.status is OpStatus.COMPLETED
    assert [s.status for s in record.steps] == [StepStatus.DONE] * 3
    assert record.state == {"one": "one-thing", "two": "two-thing", "three": "three-thing"}
    assert world.things == ["one-thing", "two-thing", "three-thing"] and seen == [
        "one",
        "two",
        "three",
        "done",
    ]


async def test_failure_undoes_newest_first_including_the_failed_step(journal: Journal) -> None:
    world = World()
    world.fail_at = "two"
    with pytest.raises(OperationFailed) as failed:
        await Runner(journal, world).run(KIND, {}, actor="tester")
    assert failed.value.compensated and failed.value.step == "two"
    assert world.log == ["run one", "run two", "undo two", "undo one"] and world.things == []
    record = journal.get(failed.value.operation_id)
    assert record.status is OpStatus.COMPENSATED and record.error == "two broke"
    assert [s.status for s in record.steps] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.PENDING,
    ]


async def test_an_undo_that_keeps_failing_leaves_the_operation_stuck_for_resume(journal: Journal) -> None:
    world = World()
    world.fail_at, world.undo_failures = "three", 3
    runner = Runner(journal, world, compensation_attempts=3, sleep=no_sleep)
    with pytest.raises(OperationFailed) as failed:
        await runner.run(KIND, {}, actor="tester")
    assert not failed.value.compensated and "ops resume" in (failed.value.hint or "")
    op_id = failed.value.operation_id
    assert journal.get(op_id).status is OpStatus.STUCK
    [orphan] = journal.orphans()
    await Runner(journal, world, sleep=no_sleep).resume(orphan)
    assert journal.get(op_id).status is OpStatus.COMPENSATED and world.things == []


async def test_resume_compensates_what_a_dead_process_left_half_done(journal: Journal) -> None:
    # What SIGKILL leaves mid-step "two": step one done, step two running, its facts remembered.
    op_id = journal.create(KIND.kind, {}, ["one", "two", "three"], actor="tester")
    journal.step(op_id, 0, StepStatus.RUNNING)
    journal.step(op_id, 0, StepStatus.DONE, state={"one": "one-thing"})
    journal.remember(op_id, {"one": "one-thing", "two": "two-thing"})
    journal.step(op_id, 1, StepStatus.RUNNING)
    world = World()
    world.things = ["one-thing", "two-thing"]
    with journal.db.session() as session:
        session.execute(update(Operation).where(Operation.id == op_id).values(owner=dead_owner()))
    [orphan] = journal.orphans()
    record = await Runner(journal, world).resume(orphan)
    assert record.status is OpStatus.COMPENSATED and world.things == []
    assert world.log == ["undo two", "undo one"]


async def test_ctrl_c_during_a_step_undoes_it_before_the_cancel_goes_through(journal: Journal) -> None:
    world = World()
    gate = asyncio.Event()

    async def hang(ctx: OpContext[World]) -> None:
        ctx.remember(two="two-thing")
        world.things.append("two-thing")
        await gate.wait()

    kind = register(OperationKind("test.hang", [step("one"), Step("two", hang, step("two").compensate)]))
    task = asyncio.ensure_future(Runner(journal, world).run(kind, {}, actor="tester"))
    while (current := _current(journal)) != "two":
        assert current in (None, "one")
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert world.things == [] and journal.recent()[0].status is OpStatus.COMPENSATED


async def test_resume_of_an_operation_killed_after_its_last_step_completes_it(journal: Journal) -> None:
    world = World()
    record = await Runner(journal, world).run(KIND, {}, actor="tester")
    with journal.db.session() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == record.id)
            .values(status=OpStatus.RUNNING, owner=dead_owner())
        )
    [orphan] = journal.orphans()
    assert (await Runner(journal, world).resume(orphan)).status is OpStatus.COMPLETED
    assert world.things == ["one-thing", "two-thing", "three-thing"]


def test_live_owners_are_not_orphans(journal: Journal) -> None:
    journal.create("test.three", {}, ["one"], actor="tester")
    assert journal.orphans() == []


def _current(journal: Journal) -> str | None:
    ops = journal.recent()
    step = ops[0].current_step if ops else None
    return step.name if step else None
