"""The leader's scheduler loop runs the hub's periodic work by itself: here, a lease that ran out is
honoured (the machine deleted) without anyone calling anything."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from autovibe.hub.service import Hub
from autovibe.machines import fleet
from autovibe.machines.models import MachineCreate, ProjectCreate
from autovibe.machines.projects import create as create_project
from autovibe.store import repositories as repo
from tests.integration.api.conftest import hub_settings


async def test_the_leader_runs_passes_that_expire_leases(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, tick_interval_s=0.2)
    async with Hub.open(settings, loops=False) as hub:
        create_project(db=hub.db, request=ProjectCreate(name="alpha"))
        request = MachineCreate(name="short", profile="claude_code", project="alpha", ttl="1h")
        assert (await fleet.deploy(hub.base_deps, request, hub.profiles, actor="t")).ok
        with hub.db.session() as session:  # the lease ran out an hour ago
            row = repo.machine_by_name(session, "short")
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(hours=1)
        hub.start()
        outcome = await asyncio.wait_for(hub.next_pass(), timeout=60)
        assert hub.is_leader
        assert [record.params["name"] for record in outcome.expired] == ["short"]
        with hub.db.session() as session:
            assert repo.machine_by_name(session, "short") is None
        vms = {r.name for r in await hub.connection.pve.cluster_resources(type="vm", fresh=True)}
        assert "short" not in vms
        second = await asyncio.wait_for(hub.next_pass(), timeout=60)  # and it keeps going
        assert second.expired == []
