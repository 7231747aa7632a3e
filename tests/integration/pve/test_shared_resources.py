"""``PveClient.resources_ttl_s``: callers share one recent ``/cluster/resources`` answer (and one request
in flight), and a write through the client drops it, so nobody misses the effect of their own change."""

from __future__ import annotations

import asyncio

import httpx

from autovibe.pve import PveClient, RequestObservation, TokenAuth
from autovibe.sim.app import SimApp


def client(sim: SimApp, seen: list[RequestObservation]) -> PveClient:
    return PveClient(
        "https://pve1:8006",
        auth=TokenAuth(sim.ensure_token()),
        transport=httpx.ASGITransport(app=sim),
        observer=seen.append,
    )


def reads(seen: list[RequestObservation]) -> int:
    return sum(1 for o in seen if o.method == "GET" and o.path == "/cluster/resources")


async def test_concurrent_and_recent_reads_share_one_request(sim: SimApp) -> None:
    seen: list[RequestObservation] = []
    async with client(sim, seen) as pve:
        pve.resources_ttl_s = 60
        answers = await asyncio.gather(*(pve.cluster_resources(type="vm") for _ in range(50)))
        assert reads(seen) == 1
        assert all(a == answers[0] for a in answers)
        await pve.cluster_resources(type="vm")
        assert reads(seen) == 1  # still fresh
        await pve.cluster_resources(type="storage")
        assert reads(seen) == 2  # another question, another answer


async def test_a_write_drops_the_shared_answer(sim: SimApp) -> None:
    seen: list[RequestObservation] = []
    async with client(sim, seen) as pve:
        pve.resources_ttl_s = 60
        before = {r.vmid for r in await pve.cluster_resources(type="vm")}
        upid = await pve.post("/nodes/pve1/qemu/9000/clone", newid=123, name="fresh")
        sim.clock.advance(600)  # let the clone task finish in simulated time
        await pve.wait_task(upid)
        after = {r.vmid for r in await pve.cluster_resources(type="vm")}
        assert 123 in after and 123 not in before
        assert reads(seen) == 2


async def test_without_a_ttl_every_call_asks_pve(sim: SimApp) -> None:
    seen: list[RequestObservation] = []
    async with client(sim, seen) as pve:
        await asyncio.gather(*(pve.cluster_resources(type="vm") for _ in range(3)))
        assert reads(seen) == 3


async def test_a_fresh_read_always_asks_pve(sim: SimApp) -> None:
    seen: list[RequestObservation] = []
    async with client(sim, seen) as pve:
        pve.resources_ttl_s = 60
        await pve.cluster_resources(type="vm")
        await pve.cluster_resources(type="vm", fresh=True)
        assert reads(seen) == 2
        await pve.cluster_resources(type="vm")
        assert reads(seen) == 2  # and the fresh answer is shared afterwards
