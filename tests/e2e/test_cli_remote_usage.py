"""Usage, quotas, limits, network isolation and metrics through a remote hub (``--hub``): the same commands,
output and exit codes as locally, from an EMPTY home with only the hub's URL and an API token.

A real ``autovibe serve`` runs on its own data dir (provisioned by the CLI on that store, as an operator
does on the hub host); the firewall drift is made by another PVE client on the same simulated cluster,
behind the hub's back. Independent CLI calls run at once to keep the test fast.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autovibe.sim.app import SimApp
from tests.e2e.hub_server import RemoteSite, cli, parallel, remote_site, token_of
from tests.fakes.cluster_audit import sim_client

pytestmark = pytest.mark.e2e

DNS = {
    "api.anthropic.com": ["192.0.2.10"],
    "api.openai.com": ["192.0.2.20"],
    "api.github.com": ["192.0.2.30"],
}


def operator_token(hub: RemoteSite) -> str:
    """A global operator's token (made on the hub host)."""
    cli(hub.host, "user", "add", "olga")
    cli(hub.host, "role", "bind", "olga", "operator")
    return token_of(hub.host, "olga")


def pve(hub: RemoteSite, method: str, path: str, **params: Any) -> Any:
    """One call on the hub's simulated cluster by another PVE client (an admin's hand)."""

    async def call() -> Any:
        sim = SimApp.open(Path(hub.host["AUTOVIBE_SIM_STATE_PATH"]), speed=500)
        async with sim_client(sim) as client:
            return await getattr(client, method)(path, **params)

    return asyncio.run(call())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSite]:
    # No real DNS: the allowlists resolve here.
    static_hosts = {"AUTOVIBE_NETWORK__STATIC_HOSTS": json.dumps(DNS)}
    with remote_site(tmp_path_factory.mktemp("remote-usage"), extra_env=static_hosts) as site:
        yield site


def _failed(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, f"exit {done.returncode}, not {code}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_usage_quotas_limits_network_and_metrics_through_the_hub(hub: RemoteSite) -> None:
    created, operator, profiles, local_profiles, metrics = parallel(
        (hub.run, "machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "agent",
         "--node", "pve1"),
        (operator_token, hub),
        (hub.json, "network", "profiles"),
        (hub.local_json, "network", "profiles"),
        (hub.ok, "metrics"),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert profiles["target"] == f"hub {hub.url}" and profiles["simulated"] is True
    assert profiles["profiles"] == local_profiles["profiles"]  # the hub's profiles, as its host sees them
    assert {p["name"] for p in profiles["profiles"]} >= {"api_access", "management_access"}
    assert "# TYPE autovibe_api_request_duration_seconds histogram" in metrics  # the hub's exposition...
    assert re.search(r'^autovibe_hub_jobs\{status="queued"\} ', metrics, re.M)
    assert not re.search(r"^(# (HELP|TYPE) )?process_", metrics, re.M)  # ...without --process

    # The first usage pass (a hub job), a clean network, limits, and the refusals.
    passed, clean, limits, applied, refused, bad_limit, listed = parallel(
        (hub.json, "quota", "enforce"),
        (hub.run, "network", "check"),
        (hub.json, "limits", "set", "agent", "--max-cpu", "90", "--idle-cpu", "5", "--idle-for", "30m"),
        (hub.json, "network", "apply", "agent", "api_access"),
        (lambda: hub.run("quota", "set", "alpha", "--cpu-hours", "5", token=operator),),
        (hub.run, "limits", "set", "agent", "--max-cpu", "150"),
        (hub.json, "machine", "list"),
    )  # fmt: skip
    assert passed["usage"]["sampled"] == 1 and passed["usage"]["dry_run"] is False
    assert passed["target"] == f"hub {hub.url}"
    assert re.search(r"^agent \(VM \d+\), profile api_access: ok$", clean.stdout, re.M), clean.stdout
    assert clean.returncode == 0
    assert limits["limits"]["max_cpu_pct"] == 90 and limits["limits"]["idle_for_s"] == 1800
    assert (applied["machine"], applied["profile"], applied["changes"]) == ("agent", "api_access", [])
    assert "--max-cpu: a percentage between 0 and 100 (got 150)" in _failed(bad_limit, 2)
    assert "olga" in _failed(refused, 3)  # an operator may not set quotas
    [vmid] = [m["vmid"] for m in listed["machines"] if m["name"] == "agent"]

    # Turn the VM's firewall off behind the hub's back.
    pve(hub, "put", f"/nodes/pve1/qemu/{vmid}/firewall/options", enable=0)
    set_, shown, usage, local_usage, drifted = parallel(
        (hub.json, "quota", "set", "alpha", "--storage-gib", "1", "--cpu-hours", "1000"),
        (hub.ok, "limits", "show", "agent"),
        (hub.json, "usage"),
        (hub.local_json, "usage"),
        (hub.run, "network", "check"),
    )
    assert set_["project"]["project"] == "alpha" and set_["project"]["level"] == "emergency"
    assert {q["metric"] for q in set_["project"]["quotas"]} == {"cpu_core_hours", "storage_gib"}
    assert re.search(r"^max CPU\s+90%$", shown, re.M) and "stop when CPU stays under 5% for 30m" in shown
    assert re.search(r"^max memory\s+-$", shown, re.M) and "no violations recorded" in shown
    # The same report as on the hub host: the same keys, window start, rows and their fields.
    assert set(usage) == set(local_usage) and usage["since"] == local_usage["since"]
    assert (usage["by"], usage["simulated"]) == ("project", True)
    assert [(r["project"], r["machine"], set(r)) for r in usage["rows"]] == [
        (r["project"], r["machine"], set(r)) for r in local_usage["rows"]
    ]
    [row] = usage["rows"]
    assert row["project"] == "alpha" and row["storage_gib"] > 1  # measured by the first pass
    assert row["storage_gib"] == local_usage["rows"][0]["storage_gib"]
    assert "firewall-off" in _failed(drifted, 1), drifted.stdout

    status, status_text, dry_run, refreshed = parallel(
        (hub.json, "quota", "show"),
        (hub.ok, "quota", "show", "alpha"),
        (hub.ok, "quota", "enforce", "--dry-run"),
        (hub.json, "network", "refresh"),
    )
    [alpha] = status["projects"]
    assert alpha["level"] == "emergency" and status["at"] >= usage["until"]
    assert re.search(r"alpha .*storage.* GiB", status_text), status_text
    assert "project 'alpha': emergency" in status_text
    assert "(dry run: nothing recorded or changed)" in dry_run and "would stop" in dry_run
    assert "agent" in dry_run
    assert refreshed["failures"] == [] and isinstance(refreshed["changes"], list)

    fixed, unset, by_machine = parallel(
        (hub.run, "network", "check", "agent", "--fix"),
        (hub.ok, "quota", "unset", "alpha"),
        (hub.ok, "usage", "--by", "machine", "--since", "2d"),  # two passes by now: agent has hours
    )
    assert re.search(r"^alpha/agent\s.*\d\s+[▁▂▃▄▅▆▇█ ]+$", by_machine, re.M), by_machine
    assert "per machine" in by_machine and f"target: hub {hub.url}" in by_machine
    assert fixed.returncode == 0 and "fixed: re-applied" in fixed.stdout, fixed.stdout + fixed.stderr
    assert "removed 2 quota(s) of project 'alpha'" in unset
