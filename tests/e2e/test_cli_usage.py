"""The CLI face of usage, limits and quotas, as a user runs it: a project with a runaway machine walks
warn -> throttle -> emergency stop under `autovibe hub tick`, and back once its quota is raised.

Like ``test_cli_machines``, the real ``autovibe`` runs as a subprocess with its own HOME. Time is under
the test's control: machines are deployed at 1000x, then the persisted simulated clock is frozen and
stepped in process (``SimApp.open(state, speed=0)`` + ``clock.advance``) between the passes, which run at
5x. A pass that only reads (GETs) saves nothing, so each pass samples the cluster within a few simulated
seconds of the instant the test chose, and the CPU used between passes is known: the runaway guest burns
its 2 cores, the others idle at 1-2%. Each step lands in the middle of the next level's band, so every
pass crosses exactly one threshold. Samples are up to ~35 minutes apart here, so ``usage.max_gap_s`` is
raised to an hour (further apart is a gap, which is not billed).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autovibe.sim.app import SimApp
from tests.e2e.test_cli_machines import Cli, assert_one_error_line

pytestmark = pytest.mark.e2e

QUOTA = 1.0  # CPU core-hours this month
RATE = 2.0 + 2 * 2 * 0.015  # core-hours per hour: the runaway's 2 cores, two idle guests at ~1.5%
PASS_SPEED = "5"  # simulated seconds per second while a pass runs (its stop tasks take 2 s each)


class UsageCli(Cli):
    def env(self, **extra: str) -> dict[str, str]:
        speed = extra.pop("AUTOVIBE_SIM_SPEED", self.speed)
        extra.setdefault("AUTOVIBE_USAGE__MAX_GAP_S", "3600")
        return {**super().env(**extra), "AUTOVIBE_SIM_SPEED": speed}

    @property
    def state(self) -> Path:
        return self.data / "sim-state.json"

    def sim(self) -> SimApp:
        """The persisted cluster, frozen: simulated time moves only when the test says so."""
        return SimApp.open(self.state, speed=0)

    def advance(self, seconds: float) -> None:
        sim = self.sim()
        sim.clock.advance(seconds)
        sim.save()

    def tick(self) -> dict[str, Any]:
        result = self.run("hub", "tick", "--json", AUTOVIBE_SIM_SPEED=PASS_SPEED)
        assert result.returncode == 0, result.stdout + result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def create(self, name: str, *labels: str) -> Any:
        flags = [item for label in labels for item in ("--label", label)]
        return self.run("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", name,
                        *flags)  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path) -> UsageCli:
    return UsageCli(tmp_path, speed="1000")


def _levels(tick: dict[str, Any]) -> list[str]:
    return [action["level"] for action in tick["usage"]["enforcement"]]


def _freeze_clear_of_month_end(cli: UsageCli) -> None:
    """Quotas here are per month: keep the whole walk inside one month of simulated time."""
    sim = cli.sim()
    now = datetime.fromtimestamp(sim.clock.now(), UTC)
    next_month = (now.replace(day=28) + timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0,
                                                                  microsecond=0)  # fmt: skip
    if next_month - now < timedelta(hours=12):
        sim.clock.advance((next_month - now).total_seconds() + 60)
    sim.save()


def test_a_runaway_project_walks_warn_throttle_emergency_and_back(cli: UsageCli) -> None:
    cli.ok("project", "create", "alpha")
    for name, labels in (("runaway", ()), ("helper", ("priority=low",)), ("keeper", ("critical=true",))):
        created = cli.create(name, *labels)
        assert created.returncode == 0, created.stdout + created.stderr
    vmids = {name: m["vmid"] for name, m in cli.machines().items()}
    _freeze_clear_of_month_end(cli)
    sim = cli.sim()
    for name, vmid in vmids.items():
        sim.set_load(vmid, "runaway" if name == "runaway" else "idle")
    cli.ok("quota", "set", "alpha", "--cpu-hours", str(QUOTA))
    cli.ok("limits", "set", "runaway", "--max-cpu", "90")

    baseline = cli.tick()  # the first samples: nothing used yet
    assert baseline["usage"]["sampled"] == 3 and _levels(baseline) == []
    levels: list[str] = []
    # The runaway burns 2 cores: step to the middle of the warn band (1.0-1.1 x quota), then of the
    # throttle band (1.1-1.5 x), then well into emergency (>= 1.5 x).
    cli.advance(1.05 * QUOTA / RATE * 3600)
    levels += _levels(cli.tick())
    cli.advance(0.25 * QUOTA / RATE * 3600)
    levels += _levels(cli.tick())
    assert levels == ["warn", "throttle"]

    refused = cli.create("more")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    message = assert_one_error_line_with_hint(refused)
    assert "project 'alpha' is" in message and "new machines are refused" in message
    assert "more" not in cli.machines()

    cli.advance(0.4 * QUOTA / RATE * 3600)
    emergency = cli.tick()
    levels += _levels(emergency)
    assert levels == ["warn", "throttle", "emergency"]
    [stop] = emergency["usage"]["enforcement"]
    assert (stop["previous"], stop["stop"], stop["spared"]) == ("throttle", ["helper", "runaway"], ["keeper"])
    assert stop["operation_id"]
    status = {name: m["status"] for name, m in cli.machines().items()}
    assert status == {"runaway": "stopped", "helper": "stopped", "keeper": "running"}

    # Still that far over: a machine someone starts again is stopped at the next pass. A dry run first.
    cli.ok("machine", "start", "helper")
    preview = cli.run("quota", "enforce", "--dry-run", "--json", AUTOVIBE_SIM_SPEED=PASS_SPEED)
    assert preview.returncode == 0, preview.stderr
    [would] = json.loads(preview.stdout)["usage"]["enforcement"]
    assert (would["level"], would["stop"], would["spared"]) == ("emergency", ["helper"], ["keeper"])
    assert would["operation_id"] is None
    again = cli.run("quota", "enforce", AUTOVIBE_SIM_SPEED=PASS_SPEED)
    assert again.returncode == 0, again.stderr
    assert "  stopped (lowest priority first): helper; operation " in again.stdout  # not by the dry run
    assert "  spared (critical): keeper" in again.stdout

    limits = cli.json("limits", "show", "runaway")["limits"]
    assert limits["max_cpu_pct"] == 90 and [v["kind"] for v in limits["violations"]] == ["cpu"]
    report = {row["machine"]: row for row in cli.json("usage", "--by", "machine")["rows"]}
    assert set(report) == {"runaway", "helper", "keeper"}
    assert report["runaway"]["cpu_core_hours"] > 10 * report["keeper"]["cpu_core_hours"] > 0
    [project] = cli.json("quota", "show", "alpha")["projects"]
    assert project["level"] == "emergency" and project["quotas"][0]["percent"] > 150

    # Raising the quota lifts the throttle at once; the next pass records the project as within quota.
    cli.ok("quota", "set", "alpha", "--cpu-hours", "100")
    allowed = cli.create("more")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    back = cli.tick()
    [lifted] = back["usage"]["enforcement"]
    assert (lifted["previous"], lifted["level"]) == ("emergency", "ok")
    assert "back within its quotas" in lifted["message"]


def assert_one_error_line_with_hint(result: Any) -> str:
    """The refusal: one ``error:`` line, then the ``hint:`` line saying what to do."""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "hint: "))]
    assert [line.split(":", 1)[0] for line in errors] == ["error", "hint"], result.stderr
    return errors[0]


def test_usage_quota_and_limits_refuse_bad_input_with_exit_2(cli: UsageCli) -> None:
    cli.ok("project", "create", "alpha")
    for args in (
        ("usage", "--since", "yesterday"),
        ("usage", "--by", "node"),
        ("quota", "set", "alpha"),
        ("quota", "set", "alpha", "--cpu-hours", "0"),
        ("quota", "set", "alpha", "--cpu-hours", "5", "--period", "year"),
        ("limits", "set", "anything", "--idle-for", "soon"),
    ):
        result = cli.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert_one_error_line(result)
    assert cli.run("quota", "set", "nope", "--cpu-hours", "5").returncode == 4
    assert cli.json("quota", "show")["projects"] == [{"project": "alpha", "level": "ok", "quotas": []}]
