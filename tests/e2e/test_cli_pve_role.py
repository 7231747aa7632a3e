"""``autovibe pve role`` as a subprocess: --print, --apply on the embedded simulator and over HTTPS, and
the doctor naming what a restricted token lacks. The token secret is printed once and logged nowhere."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim, start_sim
from tests.e2e.test_cli import Cli, assert_one_error_line, assert_plain

pytestmark = pytest.mark.e2e

TOKEN_VALUE = re.compile(
    r"autovibe@pve!autovibe=([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
ROOT_TOKEN = f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}"


class PveCli(Cli):
    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "autovibe", *args],
            capture_output=True,
            text=True,
            env=self.env(**extra_env),
            timeout=90,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> PveCli:
    return PveCli(tmp_path)


# ---- --print -------------------------------------------------------------------------------------


def test_print_shows_the_privileges_per_path_and_the_pveum_commands(cli: PveCli) -> None:
    result = cli.run("pve", "role", "--print")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].startswith("target: simulated cluster")
    assert "pveum role add AutovibeHub --privs " in out
    assert 'pveum role add AutovibeHub.Datacenter --privs "Sys.Audit,Sys.Modify"' in out
    assert "pveum user token add autovibe@pve autovibe --privsep 1" in out
    assert (
        "pveum acl modify /vms --users autovibe@pve --tokens 'autovibe@pve!autovibe' --roles AutovibeHub"
        in out
    )
    assert "--roles AutovibeHub.Datacenter --propagate 0" in out
    assert "VM.Snapshot.Rollback" not in out and "VM.Snapshot" in out
    assert_plain(out)
    assert not cli.state_file.exists(), "--print needs no cluster"


def test_print_json_with_other_names(cli: PveCli) -> None:
    result = cli.run(
        "pve", "role", "--print", "--json", "--name", "Hub", "--user", "bot@pve", "--token", "ci"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [role["roleid"] for role in data["roles"]] == ["Hub", "Hub.Datacenter"]
    assert [path["path"] for path in data["paths"]] == ["/vms", "/storage", "/nodes", "/sdn/zones", "/"]
    assert data["paths"][-1] == {
        "path": "/",
        "propagate": False,
        "privileges": ["Sys.Audit", "Sys.Modify"],
        "used_for": {"Sys.Audit": ["network profiles"], "Sys.Modify": ["network profiles"]},
    }
    assert data["token"] == "bot@pve!ci" and data["pveum"][3].startswith("pveum user token add bot@pve ci")


@pytest.mark.parametrize(
    "args",
    [(), ("--print", "--apply"), ("--print", "--user", "nobody"), ("--print", "--name", "PVEMine")],
)
def test_bad_usage_exits_2_with_one_line(cli: PveCli, args: tuple[str, ...]) -> None:
    result = cli.run("pve", "role", *args)
    assert result.returncode == 2
    assert_one_error_line(result)


# ---- --apply on the embedded simulator -----------------------------------------------------------


def test_apply_prints_the_secret_once_and_logs_it_nowhere(cli: PveCli) -> None:
    first = cli.run("-vv", "pve", "role", "--apply")
    assert first.returncode == 0, first.stderr
    [secret] = TOKEN_VALUE.findall(first.stdout)
    assert first.stdout.count(secret) == 1
    assert secret not in first.stderr  # -vv: debug logging on
    assert secret not in cli.state_file.read_text()  # the simulator keeps a hash only
    assert "- created role AutovibeHub: " in first.stdout
    assert "shown once" in first.stdout
    assert_plain(first.stdout)

    again = cli.run("pve", "role", "--apply", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["changes"] == [] and data["token_created"] is False and data["token_value"] is None
    assert secret not in again.stdout

    doctor = cli.run("doctor")  # the embedded simulator still runs on its root token
    assert doctor.returncode == 0, doctor.stdout


# ---- over HTTPS with a restricted token ----------------------------------------------------------


@pytest.fixture(scope="module")
def own_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSim]:
    """A served simulator of this module's own (these tests add users and change roles), its clock at
    real speed so the doctor's clock check passes over HTTPS (the last --speed wins)."""
    proc, served = start_sim(tmp_path_factory.mktemp("pve-role-sim"), "--speed", "1")
    try:
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def served_env(served: ServedSim, token: str) -> dict[str, str]:
    return {
        "AUTOVIBE_PVE_URL": served.url,
        "AUTOVIBE_FINGERPRINT": served.fingerprint,
        "AUTOVIBE_PVE_TOKEN": token,
    }


def admin_put(served: ServedSim, path: str, **params: str) -> None:
    cert = served.state.parent / "sim-tls" / "pve-ssl.pem"
    with httpx.Client(
        base_url=f"{served.url}/api2/json",
        verify=ssl.create_default_context(cafile=str(cert)),
        headers={"Authorization": f"PVEAPIToken={ROOT_TOKEN}"},
    ) as client:
        client.put(path, data=params).raise_for_status()


def test_doctor_lists_what_a_restricted_token_lacks(cli: PveCli, own_sim: ServedSim) -> None:
    applied = cli.run("pve", "role", "--apply", "--json", **served_env(own_sim, ROOT_TOKEN))
    assert applied.returncode == 0, applied.stderr
    token = json.loads(applied.stdout)["token_value"]
    assert TOKEN_VALUE.fullmatch(token)

    ok = cli.run("doctor", **served_env(own_sim, token))
    assert ok.returncode == 0, ok.stdout

    hub_privs = json.loads(cli.run("pve", "role", "--print", "--json").stdout)["roles"][0]["privileges"]
    kept = [p for p in hub_privs if p not in ("VM.Snapshot", "Datastore.Audit")]
    admin_put(own_sim, "/access/roles/AutovibeHub", privs=",".join(kept))

    doctor = cli.run("doctor", "--json", **served_env(own_sim, token))
    assert doctor.returncode == 1
    privileges = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "privileges")
    assert privileges["detail"] == "missing on /vms: VM.Snapshot; missing on /storage: Datastore.Audit"
    assert "autovibe pve role --apply" in privileges["hint"]
    human = cli.run("doctor", **served_env(own_sim, token))
    line = next(line for line in human.stdout.splitlines() if line.startswith("fail  privileges"))
    assert line.endswith("missing on /vms: VM.Snapshot; missing on /storage: Datastore.Audit")
    assert token.split("=")[1] not in human.stdout + human.stderr

    denied = cli.run("pve", "role", "--apply", **served_env(own_sim, token))
    assert denied.returncode == 3
    assert "cannot set up autovibe's PVE access: missing on /access: Sys.Modify" in denied.stderr

    repaired = cli.run("pve", "role", "--apply", **served_env(own_sim, ROOT_TOKEN))
    assert repaired.returncode == 0, repaired.stderr
    assert "- updated role AutovibeHub: +Datastore.Audit +VM.Snapshot" in repaired.stdout
    assert not TOKEN_VALUE.search(repaired.stdout)  # the token exists: no secret again
    assert cli.run("doctor", **served_env(own_sim, token)).returncode == 0
