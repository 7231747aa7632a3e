"""The real ``autovibe`` CLI as a subprocess, with a throwaway HOME and XDG dirs and no AUTOVIBE_* env.

stdout is a pipe here, so every human-facing output must be plain text (no ANSI escapes).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from autovibe.sim.app import SimApp
from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim

pytestmark = pytest.mark.e2e

UNUSED_SECRET = "6a1d4f0e-8b3c-4e2a-9f57-1c0d2b3a4e5f"


@dataclass
class Cli:
    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "data" / "autovibe" / "sim-state.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            NO_COLOR="1",
            **extra,
        )
        return env

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
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def assert_plain(text: str) -> None:
    assert "\x1b[" not in text, "ANSI escapes in output that is not a terminal"


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")


# ---- help and usage ---------------------------------------------------------------------------------


def test_help_lists_every_command_group(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.returncode == 0, result.stderr
    for group in ("cluster", "doctor", "demo", "sim"):
        assert f"\n  {group} " in result.stdout
    assert result.stderr == ""
    assert_plain(result.stdout)


@pytest.mark.parametrize(
    ("args", "expected"), [((), "cluster"), (("cluster",), "status"), (("sim",), "serve")]
)
def test_a_group_without_subcommand_shows_its_help_and_exits_0(
    cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    result = cli.run(*args)
    assert result.returncode == 0, result.stderr
    assert "Usage: autovibe" in result.stdout and expected in result.stdout
    assert "error" not in result.stderr


def test_console_script_is_installed_and_runs(cli: Cli) -> None:
    script = shutil.which("autovibe")
    assert script is not None, "the autovibe console script is not on PATH"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, env=cli.env(), check=False)
    assert result.returncode == 0 and result.stdout.startswith("autovibe ")


def test_help_imports_no_heavy_module(cli: Cli) -> None:
    probe = (
        "import sys\n"
        "from autovibe.cli.main import main\n"
        "code = main(['--help'])\n"
        "heavy = ('httpx', 'pydantic', 'rich', 'asyncio',\n"
        "         'autovibe.sim', 'autovibe.pve', 'autovibe.settings', 'autovibe.composition')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=cli.env(), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED []"


def test_unknown_option_exits_2_with_one_line(cli: Cli) -> None:
    result = cli.run("cluster", "status", "--bogus")
    assert result.returncode == 2
    assert_one_error_line(result)
    assert "--bogus" in result.stderr and "autovibe cluster status --help" in result.stderr
    assert result.stdout == ""


def test_unknown_command_exits_2_and_suggests(cli: Cli) -> None:
    result = cli.run("clustr")
    assert result.returncode == 2
    assert_one_error_line(result)
    assert "Did you mean 'cluster'?" in result.stderr


def test_unsafe_setting_exits_2_naming_it_without_traceback(cli: Cli) -> None:
    result = cli.run("cluster", "status", AUTOVIBE_VERIFY_TLS="false")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: invalid settings: verify_tls=false would accept any certificate")
    assert hint.startswith("hint: ")


# ---- against the embedded simulator -----------------------------------------------------------------


def test_cluster_status_json_shows_the_simulated_cluster(cli: Cli) -> None:
    result = cli.run("cluster", "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert result.stdout == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert data["simulated"] is True
    assert data["target"].startswith("simulated cluster (embedded")
    assert [node["name"] for node in data["nodes"]] == ["pve1", "pve2", "pve3"]
    assert [g["vmid"] for g in data["guests"] if g["template"]] == [9000, 9001]
    assert cli.state_file.exists(), "the embedded cluster must persist under XDG_DATA_HOME"


def test_cluster_status_human_output_starts_with_the_target(cli: Cli) -> None:
    result = cli.run("cluster", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"target: simulated cluster (embedded, state ~/{cli.state_file.relative_to(cli.home)})"
    assert any(line.startswith("9000  claude-code-template") for line in lines)
    assert_plain(result.stdout)


def test_doctor_json_is_all_ok_against_the_embedded_simulator(cli: Cli) -> None:
    result = cli.run("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["simulated"] is True
    assert {c["name"]: c["status"] for c in data["checks"]} == {
        "reachability": "ok", "tls": "ok", "auth": "ok", "clock": "ok", "privileges": "ok"
    }  # fmt: skip


def test_doctor_compares_node_clocks_with_the_simulated_clock(cli: Cli) -> None:
    # A persisted simulated cluster keeps ageing at its own speed, so its nodes' time runs ahead of the
    # wall clock; the doctor must compare with the simulator's clock, not complain about a day of skew.
    sim = SimApp.open(cli.state_file, speed=20)
    sim.clock.advance(86_400)
    sim.save()
    result = cli.run("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    clock = next(check for check in json.loads(result.stdout)["checks"] if check["name"] == "clock")
    assert clock["status"] == "ok", clock


def test_doctor_against_an_unreachable_pve_exits_1_and_never_shows_the_secret(cli: Cli) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = cli.run(
            "doctor",
            AUTOVIBE_PVE_URL=f"https://127.0.0.1:{port}",
            AUTOVIBE_PVE_TOKEN=f"root@pam!ci={UNUSED_SECRET}",
        )
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == f"target: PVE https://127.0.0.1:{port}"
    assert "fail  reachability" in result.stdout
    assert UNUSED_SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_on_a_fresh_cluster_and_leaves_the_users_alone(cli: Cli) -> None:
    # 200x instead of the default 20x: the same tour in about half the wall time (as test_cli_machines).
    result = cli.run("demo", "--speed", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("target: simulated cluster (embedded, in memory")
    for expected in (
        "full clone of 9000",
        "snapshots of VM 100",
        "- warm",
        "rollback to 'warm'",
        "sim serve",
        "POST /api/v1/machines → 202",  # the hub step: a token's deploy as a job with streamed events
        "event: ci-runner step 4/9 clone",
        "event: job succeeded",
        "POST /api/v1/projects as ci-bot → 403",
    ):
        assert expected in result.stdout
    assert "VM 100 is running again, from RAM" in result.stdout
    assert_plain(result.stdout)
    assert not cli.state_file.exists(), "the demo must not create or touch the persisted cluster"


# ---- against a simulator served over HTTPS (real sockets, pinned certificate) ----------------------------


def test_cluster_status_over_https_with_a_pinned_fingerprint(cli: Cli, served_sim: ServedSim) -> None:
    result = cli.run(
        "--fingerprint",  # a global option: before the command, as click requires
        served_sim.fingerprint,
        "cluster",
        "status",
        "--json",
        AUTOVIBE_PVE_URL=served_sim.url,
        AUTOVIBE_PVE_TOKEN=f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["simulated"] is False and data["target"] == f"PVE {served_sim.url}"
    assert [node["name"] for node in data["nodes"]] == ["pve1", "pve2", "pve3"]
    assert not cli.state_file.exists(), "a real target must not open the embedded simulator"


def test_rejected_token_exits_3_with_a_hint_and_no_secret(cli: Cli, served_sim: ServedSim) -> None:
    wrong = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    result = cli.run(
        "cluster",
        "status",
        AUTOVIBE_PVE_URL=served_sim.url,
        AUTOVIBE_PVE_TOKEN=f"root@pam!{TOKEN_NAME}={wrong}",
        AUTOVIBE_FINGERPRINT=served_sim.fingerprint,
    )
    assert result.returncode == 3, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert error_lines[0].startswith("error: ") and error_lines[1].startswith("hint: ")
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
