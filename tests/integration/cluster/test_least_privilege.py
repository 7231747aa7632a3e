"""Least privilege against the in-process simulator: the role ``pve role --apply`` sets up is enough for
everything autovibe does, and one privilege less is a 403 with PVE's message that the doctor names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.checkpoints import service as checkpoints
from autovibe.cluster.access import AccessApplied, AccessSetupDenied, apply_access
from autovibe.cluster.models import DoctorReport
from autovibe.cluster.privileges import access_plan
from autovibe.cluster.service import run_doctor
from autovibe.machines import fleet
from autovibe.machines import service as machines
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.models import MachineCreate, parse_request
from autovibe.machines.profiles import load_profiles
from autovibe.machines.scheduler import TaskGate
from autovibe.network import service as network
from autovibe.network.profiles import load_profiles as load_network_profiles
from autovibe.network.resolve import StaticResolver
from autovibe.network.service import NetworkContext
from autovibe.pve import PollPolicy, PveClient, PvePermissionDenied, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Project
from autovibe.usage import sampler

FAST_POLL = PollPolicy(initial=0.05, maximum=0.05)
PLAN = access_plan()
HUB_ROLE = PLAN.roles[0].roleid
ANSWERS = {
    "api.anthropic.com": ["160.79.104.10"],
    "api.openai.com": ["162.159.140.245"],
    "api.github.com": ["140.82.112.6"],
}


def client(sim: SimApp, token: str) -> PveClient:
    return PveClient("https://pve1:8006", auth=TokenAuth(token), transport=httpx.ASGITransport(app=sim))


@pytest.fixture
def sim() -> SimApp:
    return SimApp.open(None, speed=200)


@pytest.fixture
async def admin(sim: SimApp) -> AsyncIterator[PveClient]:
    async with client(sim, sim.ensure_token()) as pve:
        yield pve


@pytest.fixture
async def applied(admin: PveClient) -> AccessApplied:
    return await apply_access(pve=admin, plan=PLAN)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    with database.session() as session:
        session.add(Project(name="alpha", description="least privilege"))
    yield database
    database.dispose()


@pytest.fixture
async def hub(sim: SimApp, applied: AccessApplied, db: Database) -> AsyncIterator[MachineDeps]:
    """autovibe's services on the token ``--apply`` created (privilege separation on)."""
    assert applied.token_value is not None
    async with client(sim, applied.token_value) as pve:
        yield MachineDeps(pve=pve, db=db, gate=TaskGate(poll=FAST_POLL))


async def doctor(sim: SimApp, pve: PveClient) -> DoctorReport:
    return await run_doctor(pve=pve, tls_mode="in-process", clock=sim.clock.now, authid=PLAN.token_authid)


def privileges_detail(report: DoctorReport) -> str:
    return next(check for check in report.checks if check.name == "privileges").detail


async def deploy(deps: MachineDeps, name: str = "agent") -> int:
    request = parse_request(MachineCreate, {"name": name, "profile": "claude_code", "project": "alpha"})
    [outcome] = (await fleet.deploy(deps, request, load_profiles({}), actor="tester")).outcomes
    assert outcome.status == "deployed", outcome.error
    assert outcome.vmid is not None
    return outcome.vmid


def net_context() -> NetworkContext:
    return NetworkContext(load_network_profiles({}), StaticResolver(ANSWERS), {"hub": ["10.0.0.10"]})


async def drop_privilege(admin: PveClient, privilege: str) -> None:
    """Take ``privilege`` out of whichever planned role holds it (as an admin would by mistake)."""
    for role in PLAN.roles:
        if privilege in role.privileges:
            kept = [p for p in role.privileges if p != privilege]
            await admin.put(f"/access/roles/{role.roleid}", privs=",".join(kept))


# ---- the applied setup ---------------------------------------------------------------------------


async def test_apply_creates_roles_user_privsep_token_and_acls(sim: SimApp, applied: AccessApplied) -> None:
    access = sim.cluster.access
    assert access.roles == {role.roleid: frozenset(role.privileges) for role in PLAN.roles}
    token = access.users[PLAN.userid].tokens[PLAN.tokenid]
    assert token.privsep and applied.token_secret is not None
    assert applied.token_secret not in repr(applied)  # the secret is never in a repr (nor a log line)
    grants = {(e.path, e.ugid, e.roleid, e.propagate) for e in access.acls}
    for acl in PLAN.acls:
        for ugid in (PLAN.userid, PLAN.token_authid):
            assert (acl.path, ugid, acl.roleid, acl.propagate) in grants
    assert applied.changes[0].startswith(f"created role {HUB_ROLE}: ")
    assert any(change.startswith("created API token") for change in applied.changes)


async def test_apply_again_changes_nothing_and_shows_no_secret(
    admin: PveClient, applied: AccessApplied
) -> None:
    again = await apply_access(pve=admin, plan=PLAN)
    assert again.changes == ()
    assert again.token_secret is None and again.token_value is None
    assert any("already exists" in note and "cannot be shown again" in note for note in again.notes)


async def test_apply_repairs_a_role_and_a_missing_token_acl(
    sim: SimApp, admin: PveClient, applied: AccessApplied
) -> None:
    await drop_privilege(admin, "VM.Snapshot")
    await admin.put("/access/acl", path="/vms", roles=HUB_ROLE, tokens=PLAN.token_authid, delete=1)
    repaired = await apply_access(pve=admin, plan=PLAN)
    assert repaired.changes == (
        f"updated role {HUB_ROLE}: +VM.Snapshot",
        f"granted {HUB_ROLE} on /vms to {PLAN.token_authid}",
    )


async def test_the_new_token_may_not_set_up_access_itself(hub: MachineDeps) -> None:
    with pytest.raises(AccessSetupDenied) as denied:
        await apply_access(pve=hub.pve, plan=PLAN)
    assert "missing on /access: Sys.Modify" in denied.value.message
    assert "Permissions.Modify" in denied.value.message and denied.value.hint


# ---- enough for everything autovibe does --------------------------------------------------------


async def test_the_token_is_enough_for_everything_autovibe_does(sim: SimApp, hub: MachineDeps) -> None:
    report = await doctor(sim, hub.pve)
    assert report.ok, report.checks

    vmid = await deploy(hub)
    applied_net = await network.apply(hub, net_context(), "agent", "api_access")
    assert applied_net.changes
    assert (await network.check(hub, net_context(), "agent")).differences == ()

    created = await checkpoints.create(hub, "agent", "before", actor="tester")
    assert created.checkpoint.ram
    await machines.power(hub, "agent", "stop")
    restored = await checkpoints.restore(hub, "agent", "before", actor="tester")
    assert restored.status == "running"
    await checkpoints.delete(hub, "agent", "before", actor="tester")

    now = datetime.fromtimestamp(sim.clock.now(), UTC)
    [sample] = await sampler.read(hub, now=now)
    assert sample.vmid == vmid
    assert (await sampler.measure_storage(hub, now=now)).get(vmid, 0) > 0

    await machines.delete(hub, "agent", actor="tester")
    assert vmid not in sim.cluster.guests


# ---- one privilege less ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privilege", "call", "checked", "granted"),
    [
        ("VM.Snapshot", ("POST", "{vm}/snapshot", {"snapname": "denied"}), "/vms/{vmid}", "/vms"),
        (
            "VM.Config.Network",
            ("POST", "{vm}/firewall/rules", {"type": "in", "action": "DROP"}),
            "/vms/{vmid}",
            "/vms",
        ),
        ("Sys.Modify", ("POST", "/cluster/firewall/ipset", {"name": "denied"}), "/", "/"),
    ],
)
async def test_one_privilege_less_is_pves_403_and_the_doctor_names_it(
    sim: SimApp,
    admin: PveClient,
    hub: MachineDeps,
    privilege: str,
    call: tuple[str, str, dict[str, Any]],
    checked: str,
    granted: str,
) -> None:
    vmid = await deploy(hub)
    await drop_privilege(admin, privilege)
    method, template, params = call
    vm = f"/nodes/{sim.cluster.guests[vmid].node}/qemu/{vmid}"
    with pytest.raises(PvePermissionDenied) as denied:
        await hub.pve.request(method, template.format(vm=vm), params)
    assert denied.value.status == 403
    assert denied.value.message == f"Permission check failed ({checked.format(vmid=vmid)}, {privilege})"

    report = await doctor(sim, hub.pve)
    assert privileges_detail(report) == f"missing on {granted}: {privilege}"
    assert not report.ok

    await apply_access(pve=admin, plan=PLAN)
    assert (await doctor(sim, hub.pve)).ok


async def test_a_checkpoint_without_vm_snapshot_fails_with_pves_message(
    sim: SimApp, admin: PveClient, hub: MachineDeps
) -> None:
    vmid = await deploy(hub)
    await drop_privilege(admin, "VM.Snapshot")
    with pytest.raises(Exception, match=rf"Permission check failed \(/vms/{vmid}, VM\.Snapshot\)"):
        await checkpoints.create(hub, "agent", "denied", actor="tester")
    assert privileges_detail(await doctor(sim, hub.pve)) == "missing on /vms: VM.Snapshot"


async def test_the_users_acls_alone_do_not_reach_a_privsep_token(
    sim: SimApp, admin: PveClient, hub: MachineDeps
) -> None:
    await admin.put("/access/acl", path="/storage", roles=HUB_ROLE, tokens=PLAN.token_authid, delete=1)
    assert privileges_detail(await doctor(sim, hub.pve)) == (
        "missing on /storage: Datastore.AllocateSpace, Datastore.Audit"
    )
