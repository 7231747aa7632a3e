"""The CLI face of network isolation: deploys apply the profile, check finds drift and fixes it, user
rules survive, refresh follows DNS answers, and bad profiles are refused before any change."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from autovibe.sim.app import SimApp
from tests.e2e.test_cli_machines import Cli
from tests.fakes.cluster_audit import sim_client

pytestmark = pytest.mark.e2e

DNS = {
    "api.anthropic.com": ["192.0.2.10"],
    "api.openai.com": ["192.0.2.20"],
    "api.github.com": ["192.0.2.30"],
}


def pve(cli: Cli, method: str, path: str, **params: Any) -> Any:
    """One call on the same simulated cluster, as another PVE client (an admin's hand) would make it."""

    async def call() -> Any:
        sim = SimApp.open(cli.data / "sim-state.json", speed=1000)
        async with sim_client(sim) as client:
            return await getattr(client, method)(path, **params)

    return asyncio.run(call())


def test_deploy_check_fix_user_rules_and_refresh(tmp_path: Any) -> None:
    cli = Cli(tmp_path, speed="1000")
    dns = {"AUTOVIBE_NETWORK__STATIC_HOSTS": json.dumps(DNS)}
    cli.ok("project", "create", "alpha")
    created = json.loads(cli.run("machine", "create", "--profile", "claude_code", "--project", "alpha",
                                 "--name", "agent", "--node", "pve1", "--json", **dns).stdout)  # fmt: skip
    vmid = created["outcomes"][0]["vmid"]
    rules_path = f"/nodes/pve1/qemu/{vmid}/firewall/rules"

    checked = json.loads(cli.run("network", "check", "--json", **dns).stdout)
    [agent] = checked["machines"]
    assert (agent["profile"], agent["differences"]) == ("api_access", [])
    assert "bridge=vmbr1" in pve(cli, "get", f"/nodes/pve1/qemu/{vmid}/config")["net0"]

    pve(
        cli,
        "post",
        rules_path,
        type="in",
        action="ACCEPT",
        proto="tcp",
        dport="22",
        comment="my ssh",
        enable=1,
    )
    rules = pve(cli, "get", rules_path)
    doomed = next(r for r in rules if str(r.get("comment", "")).endswith("guard link-local"))
    pve(cli, "delete", f"{rules_path}/{doomed['pos']}")

    drifted = cli.run("network", "check", "agent", **dns)
    assert drifted.returncode == 1 and "missing-rule" in drifted.stdout and "link-local" in drifted.stdout
    fixed = cli.run("network", "check", "agent", "--fix", **dns)
    assert fixed.returncode == 0 and "fixed" in fixed.stdout, fixed.stdout + fixed.stderr
    comments = [str(r.get("comment", "")) for r in pve(cli, "get", rules_path)]
    assert (
        comments[0].endswith("guard pve-api") and "my ssh" in comments
    )  # autovibe's on top, the user's kept
    assert cli.run("network", "apply", "agent", "api_access", **dns).returncode == 0
    assert "my ssh" in [str(r.get("comment", "")) for r in pve(cli, "get", rules_path)]

    moved = {"AUTOVIBE_NETWORK__STATIC_HOSTS": json.dumps({**DNS, "api.openai.com": ["192.0.2.21"]})}
    refreshed = json.loads(cli.run("network", "refresh", "--json", **moved).stdout)
    assert "autovibe-api-openai-com: added 192.0.2.21" in refreshed["changes"]
    assert "autovibe-api-openai-com: removed 192.0.2.20" in refreshed["changes"]
    members = {e["cidr"] for e in pve(cli, "get", "/cluster/firewall/ipset/autovibe-api-openai-com")}
    assert members == {"192.0.2.21"}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, int]:
    """One HOME with project alpha and machine ``agent`` on pve1, shared by the refusals (none of which
    may change it: each checks that its refusal left the VM's firewall rules as they were)."""
    cli = Cli(tmp_path_factory.mktemp("bad-profiles"), speed="1000")
    cli.ok("project", "create", "alpha")
    cli.ok(
        "machine",
        "create",
        "--profile",
        "claude_code",
        "--project",
        "alpha",
        "--name",
        "agent",
        "--node",
        "pve1",
    )
    return cli, cli.machines()["agent"]["vmid"]


@pytest.mark.parametrize(
    ("profile", "why"),
    [({"bridge": "vmbr1", "allow": ["10.0.0.0/33"]}, "not an IP address or CIDR"),
     ({"bridge": "vmbr1", "allow": ["api.example.com:70000"]}, "1-65535"),
     ({"bridge": "vmbr9"}, "node pve1 does not have")],
)  # fmt: skip
def test_bad_profiles_are_refused_before_any_change(
    deployed: tuple[Cli, int], profile: dict[str, Any], why: str
) -> None:
    cli, vmid = deployed
    before = pve(cli, "get", f"/nodes/pve1/qemu/{vmid}/firewall/rules")

    refused = cli.run(
        "network", "apply", "agent", "lab", AUTOVIBE_NETWORK__PROFILES=json.dumps({"lab": profile})
    )

    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: ") and why in refused.stderr.splitlines()[0]
    assert pve(cli, "get", f"/nodes/pve1/qemu/{vmid}/firewall/rules") == before
