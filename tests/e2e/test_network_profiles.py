"""Network profiles applied by autovibe to a served simulator over HTTPS, read back by proxmoxer.

autovibe's client pins the simulator's certificate; proxmoxer (an independent client) then reads the
bridge, firewall flags, policies, rules and IP set members back. DNS is the outside world here, so host
names resolve through a static table the test controls (which is how it changes the answers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from proxmoxer import ProxmoxAPI

from autovibe.machines.deploy import MachineDeps
from autovibe.network import service
from autovibe.network.profiles import NetworkProfileInvalid, load_profiles
from autovibe.network.resolve import StaticResolver
from autovibe.network.service import NetworkContext
from autovibe.pve import PollPolicy, PveClient, TlsTrust, TokenAuth
from autovibe.security.gate import Gate
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Machine, Project
from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim

pytestmark = pytest.mark.e2e

ANSWERS = {
    "api.anthropic.com": ["160.79.104.10", "2607:6bc0::10"],
    "api.openai.com": ["162.159.140.245"],
    "api.github.com": ["140.82.112.6"],
}
HOSTS = {"hub": ["10.0.0.10"], "db": ["10.0.0.20"]}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    with database.session() as session:
        session.add(Project(name="net", description="network e2e"))
    yield database
    database.dispose()


@pytest.fixture
async def deps(served_sim: ServedSim, db: Database) -> AsyncIterator[MachineDeps]:
    client = PveClient(
        served_sim.url,
        auth=TokenAuth(f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}"),
        tls=TlsTrust(fingerprint=served_sim.fingerprint),
    )
    async with client:
        # Approvals are the gate's business (tested there); here the read-back matters, so a loosening
        # profile (management_access has no host guard) is not held for one.
        yield MachineDeps(pve=client, db=db, security=Gate(db, approve_at=100, deny_at=101))


async def machine(deps: MachineDeps, name: str) -> int:
    """A running full clone of template 9000 on pve1, recorded as a machine of project 'net'."""
    pve = deps.pve
    vmid = int(await pve.get("/cluster/nextid"))
    poll = PollPolicy(initial=0.02, maximum=0.1)
    await pve.wait_task(
        await pve.post("/nodes/pve1/qemu/9000/clone", newid=vmid, name=name, full=1), poll=poll
    )
    await pve.wait_task(await pve.post(f"/nodes/pve1/qemu/{vmid}/status/start"), poll=poll)
    with deps.db.session() as session:
        project = session.query(Project).filter_by(name="net").one()
        session.add(Machine(name=name, vmid=vmid, node="pve1", project_id=project.id, profile="claude_code",
                            created_by="e2e", operation_id=f"e2e-{name}"))  # fmt: skip
    return vmid


def token_client(served: ServedSim) -> ProxmoxAPI:
    """proxmoxer with the token, verifying the simulator's certificate (written next to its state)."""
    cert = served.state.parent / "sim-tls" / "pve-ssl.pem"
    return ProxmoxAPI(
        "127.0.0.1", port=served.port, user="root@pam", token_name=TOKEN_NAME, token_value=TOKEN_SECRET,
        verify_ssl=str(cert),
    )  # fmt: skip


def context(answers: dict[str, list[str]] | None = None) -> NetworkContext:
    return NetworkContext(load_profiles({}), StaticResolver(answers or ANSWERS), HOSTS)


def comments(prox: ProxmoxAPI, vmid: int) -> list[str]:
    return [str(r.get("comment", "")) for r in prox.nodes("pve1").qemu(vmid).firewall.rules.get()]


def members(prox: ProxmoxAPI, name: str) -> set[str]:
    return {str(e["cidr"]) for e in prox.cluster.firewall.ipset(name).get()}


async def test_each_seed_profile_reads_back_through_proxmoxer(
    deps: MachineDeps, served_sim: ServedSim
) -> None:
    prox = token_client(served_sim)
    agent = await machine(deps, "net-agent")
    hub = await machine(deps, "net-hub")

    applied = await service.apply(deps, context(), "net-agent", "api_access")
    await service.apply(deps, context(), "net-hub", "management_access")

    assert applied.changes and any("datacenter firewall is off" in w for w in applied.warnings)
    vm = prox.nodes("pve1").qemu(agent)
    net0 = dict(p.split("=", 1) for p in vm.config.get()["net0"].split(","))
    assert (net0["bridge"], net0["firewall"]) == ("vmbr1", "1")
    options = vm.firewall.options.get()
    assert (int(options["enable"]), options["policy_in"], options["policy_out"]) == (1, "DROP", "DROP")
    guards = ["guard pve-api", "guard pve-ssh", "guard link-local"]
    assert comments(prox, agent)[:3] == [f"autovibe:api_access:{g}" for g in guards]
    first = vm.firewall.rules(0).get()
    assert (first["type"], first["action"], first["dport"], first["dest"]) == (
        "out",
        "DROP",
        "8006",
        "+autovibe-pve-nodes",
    )
    assert members(prox, "autovibe-api-anthropic-com") == {"160.79.104.10", "2607:6bc0::10"}
    assert members(prox, "autovibe-hub") == {"10.0.0.10"}
    nodes = {str(n["ip"]) for n in prox.cluster.status.get() if n["type"] == "node"}
    assert members(prox, "autovibe-pve-nodes") == nodes and nodes

    hub_vm = prox.nodes("pve1").qemu(hub)
    assert "bridge=vmbr0" in hub_vm.config.get()["net0"]
    hub_rules = comments(prox, hub)
    assert "autovibe:management_access:allow 10.0.0.0/8" in hub_rules
    assert not any("guard" in c for c in hub_rules)  # it must reach the PVE API

    again = await service.apply(deps, context(), "net-agent", "api_access")
    assert again.changes == ()  # idempotent
    assert (await service.check(deps, context(), "net-agent")).differences == ()


async def test_user_rules_survive_drift_is_found_and_fixed_and_refresh_follows_dns(
    deps: MachineDeps, served_sim: ServedSim
) -> None:
    prox = token_client(served_sim)
    vmid = await machine(deps, "net-drift")
    await service.apply(deps, context(), "net-drift", "api_access")
    rules = prox.nodes("pve1").qemu(vmid).firewall.rules
    rules.post(
        type="in", action="ACCEPT", proto="tcp", dport="22", comment="my ssh", pos=0
    )  # by hand, on top

    await service.apply(deps, context(), "net-drift", "api_access")
    assert "my ssh" in comments(prox, vmid)

    autovibe_rules = [r for r in rules.get() if str(r.get("comment", "")).startswith("autovibe:")]
    doomed = next(r for r in autovibe_rules if r["comment"].endswith("allow api.openai.com:443"))
    rules(doomed["pos"]).delete()
    report = await service.check(deps, context(), "net-drift")
    assert [(d.kind, "api.openai.com" in d.detail) for d in report.differences] == [("missing-rule", True)]

    await service.apply(deps, context(), "net-drift", "api_access")  # what `check --fix` runs
    assert (await service.check(deps, context(), "net-drift")).differences == ()
    assert "my ssh" in comments(prox, vmid)

    moved = {**ANSWERS, "api.openai.com": ["162.159.140.246", "2606:4700::6812:1"]}
    refreshed = await service.refresh(deps, context(moved))
    assert "autovibe-api-openai-com: added 162.159.140.246" in refreshed.changes
    assert members(prox, "autovibe-api-openai-com") == {"162.159.140.246", "2606:4700::6812:1"}
    gone = {k: v for k, v in moved.items() if k != "api.github.com"}
    still = await service.refresh(deps, context(gone))  # a name that stops resolving keeps its addresses
    assert members(prox, "autovibe-api-github-com") == {"140.82.112.6"} and still.failures


async def test_a_profile_with_an_unknown_bridge_changes_nothing(
    deps: MachineDeps, served_sim: ServedSim
) -> None:
    prox = token_client(served_sim)
    vmid = await machine(deps, "net-nobridge")
    before = (prox.nodes("pve1").qemu(vmid).config.get()["net0"], comments(prox, vmid))
    ctx = NetworkContext(load_profiles({"lab": {"bridge": "vmbr9"}}), StaticResolver(ANSWERS), HOSTS)
    with pytest.raises(NetworkProfileInvalid, match="node pve1 does not have"):
        await service.apply(deps, ctx, "net-nobridge", "lab")
    assert (prox.nodes("pve1").qemu(vmid).config.get()["net0"], comments(prox, vmid)) == before
