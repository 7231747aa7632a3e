"""A whole scenario with debug logging, then a grep of every line autovibe wrote for the secrets it used.

The real CLI drives a served simulator over HTTPS with a PVE API token, stores an AI key as a secret,
posts alerts to a webhook with a signing secret, and acts as a user through an autovibe token. Every
stdout and stderr line of every command (logs at debug level included) must hold none of them; the one
exception is ``token create``, whose job is to show the new token once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim
from tests.e2e.test_cli_machines import Cli

pytestmark = pytest.mark.e2e

AI_KEY = "sk-ant-api03-e2eLeakCheck-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
WEBHOOK_SECRET = "whsec-e2e-leak-check-5b1f0c9e7d2a"


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_no_secret_appears_in_any_output(tmp_path: Path, served_sim: ServedSim, webhook: str) -> None:
    pve_token = f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}"
    env = {
        "AUTOVIBE_PVE_URL": served_sim.url,
        "AUTOVIBE_PVE_TOKEN": pve_token,
        "AUTOVIBE_FINGERPRINT": served_sim.fingerprint,
        "AUTOVIBE_USAGE__WEBHOOK_URL": webhook,
        "AUTOVIBE_USAGE__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AUTOVIBE_LOG_LEVEL": "debug",
    }
    cli = Cli(tmp_path)
    outputs: list[str] = []

    def run(*args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "autovibe", "-vv", *args],
            capture_output=True, text=True, env=cli.env(**env, **extra), input=stdin, timeout=120,
            check=False,
        )  # fmt: skip
        outputs.append(result.stdout + result.stderr)
        return result

    assert run("project", "create", "leaks").returncode == 0
    assert run("secret", "set", "anthropic-api-key", stdin=AI_KEY + "\n").returncode == 0
    run("secret", "list")
    assert run("user", "add", "dana").returncode == 0
    assert run("role", "bind", "dana", "operator", "--project", "leaks").returncode == 0
    created = subprocess.run(
        [sys.executable, "-m", "autovibe", "token", "create", "dana", "--json"],
        capture_output=True, text=True, env=cli.env(**env), timeout=120, check=False,
    )  # fmt: skip
    user_token = json.loads(created.stdout)["secret"]
    outputs.append(created.stderr)  # its stdout is the one place the token is meant to appear
    as_dana = {"AUTOVIBE_TOKEN": user_token}
    deployed = run("machine", "create", "--profile", "claude_code", "--project", "leaks", "--name", "leak-1",
                   **as_dana)  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert run("checkpoint", "create", "leak-1", "first", **as_dana).returncode == 0
    assert run("quota", "set", "leaks", "--cpu-hours", "0.0001").returncode == 0
    run("hub", "tick")  # sampling, the quota breach alert to the webhook, refresh, leases
    run("machine", "delete", "leak-1", "--yes", **as_dana)  # denied or held: either way, no secret
    run("audit", "list", "--json")
    run("audit", "export", "--jsonl")
    run("doctor")
    run("token", "create", "dana", "--bogus-flag")  # a usage error

    text = "\n".join(outputs)
    assert "sampled" in text and "leak-1" in text  # the scenario ran
    for secret in (TOKEN_SECRET, pve_token, AI_KEY, WEBHOOK_SECRET, user_token, user_token.split("_")[-1]):
        assert secret not in text, f"a secret leaked: {secret[:6]}..."
