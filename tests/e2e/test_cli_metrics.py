"""``autovibe metrics`` as a user (or a Prometheus textfile collector) runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_cli_machines import Cli
from tests.integration.usage.test_metrics import check_metrics

pytestmark = pytest.mark.e2e


def test_metrics_exposition_passes_promtool(tmp_path: Path) -> None:
    cli = Cli(tmp_path, speed="1000")
    cli.ok("project", "create", "alpha")
    cli.ok("machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "agent")
    cli.ok("quota", "set", "alpha", "--cpu-hours", "100")
    cli.ok("hub", "tick")
    cli.ok("hub", "tick")

    text = cli.ok("metrics").stdout

    families = {f.name: f for f in text_string_to_metric_families(text)}
    machines = {s.labels["state"]: s.value for s in families["autovibe_machines"].samples}
    assert machines == {"running": 1.0}
    quota = [s for s in families["autovibe_project_quota"].samples if s.labels["project"] == "alpha"]
    assert [(s.labels["metric"], s.value) for s in quota] == [("cpu_core_hours", 100.0)]
    deploys = [s for s in families["autovibe_operations"].samples if s.labels.get("kind") == "machine.deploy"]
    assert any(s.value == 1.0 for s in deploys)
    assert "autovibe_pve_request_duration_seconds_bucket" in text
    path = tmp_path / "metrics.prom"
    path.write_text(text)
    checked = check_metrics(path)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
