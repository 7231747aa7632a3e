"""A small driver for tests that talk raw HTTP to the in-process simulator and step its clock."""

from __future__ import annotations

from typing import Any

import httpx

from autovibe.sim.app import SimApp


class SimDriver:
    def __init__(self, sim: SimApp, api: httpx.AsyncClient) -> None:
        self.sim = sim
        self.api = api

    async def call(self, method: str, path: str, **params: Any) -> Any:
        """The ``data`` of a successful call; raises AssertionError with PVE's message otherwise."""
        response = await self.request(method, path, **params)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()["data"]

    async def request(self, method: str, path: str, **params: Any) -> httpx.Response:
        wire = {k: (int(v) if isinstance(v, bool) else v) for k, v in params.items()}
        if method in ("POST", "PUT"):
            return await self.api.request(method, path, data=wire)
        return await self.api.request(method, path, params=wire)

    async def status(self, upid: str) -> dict[str, Any]:
        node = upid.split(":")[1]
        result: dict[str, Any] = await self.call("GET", f"/nodes/{node}/tasks/{upid}/status")
        return result

    async def finish(self, upid: str, *, step: float = 1.0, limit: float = 86400.0) -> dict[str, Any]:
        """Step simulated time until the task stops; returns its final status."""
        waited = 0.0
        while True:
            status = await self.status(upid)
            if status["status"] == "stopped":
                return status
            assert waited < limit, f"task {upid} still running after {limit}s simulated"
            self.sim.clock.advance(step)
            waited += step

    async def ok(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        """Start an async call and run its task to success."""
        upid = await self.call(method, path, **params)
        status = await self.finish(upid)
        assert status["exitstatus"] == "OK", status
        return status

    async def clone(self, newid: int, *, source: int = 9000, node: str = "pve1", **params: Any) -> None:
        await self.ok("POST", f"/nodes/{node}/qemu/{source}/clone", newid=newid, **params)

    async def config(self, vmid: int, node: str = "pve1") -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/nodes/{node}/qemu/{vmid}/config")
        return result
