"""``autovibe sim serve`` as a real subprocess over HTTPS, shared by the e2e tests of a session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "e2e-password-1"
TOKEN_NAME, TOKEN_SECRET = "e2e", "5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10"


@dataclass(frozen=True)
class ServedSim:
    url: str
    port: int
    fingerprint: str
    state: Path


def start_sim(tmp: Path, *extra: str) -> tuple[subprocess.Popen[str], ServedSim]:
    """Start the CLI's simulator on a free port and wait (without sleeping) until it listens."""
    state = tmp / "sim-state.json"
    cmd = [
        sys.executable, "-m", "autovibe", "sim", "serve", "--tls", "--port", "0", "--state", str(state),
        "--speed", "200", "--user", f"root@pam:{PASSWORD}",
        "--token", f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    seen, fingerprint = [], ""
    for line in proc.stdout:
        seen.append(line)
        if "fingerprint" in line:
            fingerprint = line.rsplit(" ", 1)[-1].strip()
        match = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            return proc, ServedSim(f"https://127.0.0.1:{port}", port, fingerprint, state)
    proc.wait(timeout=10)
    proc.stdout.close()
    raise AssertionError("simulator did not start:\n" + "".join(seen))


@pytest.fixture(scope="session")
def served_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSim]:
    proc, served = start_sim(tmp_path_factory.mktemp("served-sim"))
    try:
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
