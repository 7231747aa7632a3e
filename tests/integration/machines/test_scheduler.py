"""The task gate: per-node and per-VM limits, and waiting out PVE's locks within a deadline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from autovibe.machines.scheduler import TaskGate, TaskLimits, VmidAllocator
from autovibe.pve import PveClient, PveLocked, TokenAuth
from autovibe.sim.app import SimApp


async def test_no_more_than_per_node_slots_run_at_once_and_one_per_vm() -> None:
    gate = TaskGate(limits=TaskLimits(per_node=3))
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    release = asyncio.Event()

    async def work(node: str, vmid: int) -> None:
        async with gate.slot(node, vmid):
            running[node] = running.get(node, 0) + 1
            peak[node] = max(peak.get(node, 0), running[node])
            await release.wait()
            running[node] -= 1

    tasks = [asyncio.ensure_future(work("pve1", 100 + i)) for i in range(8)]
    tasks += [asyncio.ensure_future(work("pve2", 200)) for _ in range(3)]  # same VM three times
    for _ in range(20):
        await asyncio.sleep(0)
    assert running == {"pve1": 3, "pve2": 1}
    release.set()
    await asyncio.gather(*tasks)
    assert peak == {"pve1": 3, "pve2": 1}


@pytest.fixture
async def frozen() -> tuple[SimApp, PveClient]:
    sim = SimApp.open(None, speed=0)
    client = PveClient(
        "https://pve1:8006", auth=TokenAuth(sim.ensure_token()), transport=httpx.ASGITransport(app=sim)
    )
    return sim, client


async def test_a_locked_vm_is_waited_out_with_jitter(frozen: tuple[SimApp, PveClient]) -> None:
    sim, pve = frozen
    async with pve:
        await pve.post("/nodes/pve1/qemu/9000/clone", newid=100)
        sim.clock.advance(10)
        await pve.post("/nodes/pve1/qemu/100/status/start")
        sim.clock.advance(10)
        await pve.post("/nodes/pve1/qemu/100/snapshot", snapname="ram", vmstate=1)  # ~21 s with 4 GiB RAM
        waits: list[float] = []

        async def sleep(seconds: float) -> None:  # waiting lets simulated time pass
            waits.append(seconds)
            sim.clock.advance(seconds)

        gate = TaskGate(sleep=sleep)
        await gate.retry_locked(lambda: pve.put("/nodes/pve1/qemu/100/config", cores=4), what="configure")
        assert len(waits) >= 3 and len(set(waits)) == len(waits)  # backed off, jittered
        assert (await pve.get("/nodes/pve1/qemu/100/config"))["cores"] == 4


async def test_a_lock_that_never_clears_gives_up_at_the_deadline(frozen: tuple[SimApp, PveClient]) -> None:
    _, pve = frozen
    async with pve:
        await pve.post("/nodes/pve1/qemu/9000/clone", newid=100, full=1)  # stays locked: time is frozen
        waited: list[float] = []

        async def sleep(seconds: float) -> None:
            waited.append(seconds)

        gate = TaskGate(limits=TaskLimits(lock_deadline_s=30), sleep=sleep)
        with pytest.raises(PveLocked) as locked:
            await gate.retry_locked(lambda: pve.put("/nodes/pve1/qemu/100/config", cores=4), what="configure")
        # It waited the whole deadline (the last pause cut short to end there), never beyond it.
        assert locked.value.lock == "clone" and sum(waited) == pytest.approx(30)
        assert all(pause > 0 for pause in waited)


async def test_a_zero_lock_deadline_fails_at_once(frozen: tuple[SimApp, PveClient]) -> None:
    _, pve = frozen
    async with pve:
        await pve.post("/nodes/pve1/qemu/9000/clone", newid=100, full=1)
        waited: list[float] = []

        async def sleep(seconds: float) -> None:
            waited.append(seconds)

        gate = TaskGate(limits=TaskLimits(lock_deadline_s=0), sleep=sleep)
        with pytest.raises(PveLocked):
            await gate.retry_locked(lambda: pve.put("/nodes/pve1/qemu/100/config", cores=4), what="configure")
        assert waited == []


async def test_vmids_handed_out_concurrently_never_repeat(frozen: tuple[SimApp, PveClient]) -> None:
    _, pve = frozen
    async with pve:
        allocator = VmidAllocator()
        ids = await asyncio.gather(*(allocator.take(pve) for _ in range(10)))
        assert sorted(ids) == list(range(100, 110))
