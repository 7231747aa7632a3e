"""The deploy saga against the simulator: machines end deployed and recorded, or absent everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import InvalidMachineRequest, MachineNameTaken, ProjectNotFound
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus
from autovibe.sim.app import SimApp
from autovibe.sim.faults import FaultPlan, TaskFault


def request(**fields: Any) -> MachineCreate:
    return parse_request(
        MachineCreate, {"name": "agent", "profile": "claude_code", "project": "alpha", **fields}
    )


async def vms(deps: MachineDeps) -> dict[int, Any]:
    return {r.vmid: r for r in await deps.pve.cluster_resources(type="vm") if not r.template}


async def test_one_machine_is_cloned_configured_started_and_recorded(
    deps: MachineDeps, profiles: Any
) -> None:
    result = await fleet.deploy(deps, request(memory_mib="6G", disk_gib=30), profiles, actor="tester")
    [outcome] = result.outcomes
    assert outcome.status == "deployed", outcome.error
    live = (await vms(deps))[outcome.vmid]
    assert live.status == "running" and live.name == "agent" and live.maxmem == 6 * 1024**3
    config = await deps.pve.get(f"/nodes/{live.node}/qemu/{outcome.vmid}/config")
    assert "firewall=1" in config["net0"] and config["scsi0"].endswith("size=30G")
    assert config["tags"].split(";")[0] == "autovibe"
    [read] = await machines.list_machines(deps)
    assert (read.name, read.vmid, read.status, read.project) == ("agent", outcome.vmid, "running", "alpha")
    assert Journal(deps.db).get(outcome.operation_id or "").status is OpStatus.COMPLETED


async def test_a_fleet_spreads_over_the_nodes(deps: MachineDeps, profiles: Any) -> None:
    result = await fleet.deploy(deps, request(count=6, start=False), profiles, actor="tester")
    assert result.ok, [o.error for o in result.outcomes]
    nodes = [o.node for o in result.outcomes]
    assert sorted(nodes.count(n) for n in {"pve1", "pve2", "pve3"}) == [2, 2, 2]
    assert len({o.vmid for o in result.outcomes}) == 6
    assert {v.name for v in (await vms(deps)).values()} == {f"agent-{i}" for i in range(1, 7)}


async def test_a_failed_clone_leaves_nothing_behind(
    deps: MachineDeps, profiles: Any, fast_sim: SimApp
) -> None:
    fast_sim.cluster.faults = FaultPlan(tasks=[TaskFault("qmclone", 1.0, "clone failed: disk on fire")])
    result = await fleet.deploy(deps, request(count=3), profiles, actor="tester")
    assert [o.status for o in result.outcomes] == ["failed"] * 3
    assert "disk on fire" in (result.outcomes[0].error or "")
    assert await vms(deps) == {} and await machines.list_machines(deps) == []
    statuses = {op.status for op in Journal(deps.db).recent()}
    assert statuses == {OpStatus.COMPENSATED}


async def test_delete_stops_and_purges(deps: MachineDeps, profiles: Any) -> None:
    [outcome] = (await fleet.deploy(deps, request(), profiles, actor="tester")).outcomes
    record = await machines.delete(deps, "agent", actor="tester")
    assert record.status is OpStatus.COMPLETED
    assert outcome.vmid not in await vms(deps) and await machines.list_machines(deps) == []


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"project": "nope"}, ProjectNotFound),
        ({"node": "pve9"}, Exception),
        ({"disk_gib": 5}, InvalidMachineRequest),
    ],
)
async def test_bad_requests_create_nothing(deps: MachineDeps, profiles: Any, fields: Any, error: Any) -> None:
    with pytest.raises(error):
        await fleet.deploy(deps, request(**fields), profiles, actor="tester")
    assert await vms(deps) == {} and Journal(deps.db).recent() == []


async def test_names_are_unique(deps: MachineDeps, profiles: Any) -> None:
    await fleet.deploy(deps, request(start=False), profiles, actor="tester")
    with pytest.raises(MachineNameTaken):
        await fleet.deploy(deps, request(start=False), profiles, actor="tester")
