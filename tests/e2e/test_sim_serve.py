"""``autovibe sim serve`` as a user starts it: generated credentials, fault files, PVE's 401 shape."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def serve(tmp: Path, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    cmd = [sys.executable, "-m", "autovibe", "sim", "serve", "--port", "0", "--speed", "100", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1), lines
    proc.wait(timeout=10)
    proc.stdout.close()
    raise AssertionError("simulator did not start:\n" + "".join(lines))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def test_a_fresh_cluster_prints_credentials_once_and_they_work(tmp_path: Path) -> None:
    state = tmp_path / "cluster.json"
    proc, url, lines = serve(tmp_path, "--state", str(state))
    try:
        token = next(re.search(r"API token: (\S+)", ln).group(1) for ln in lines if "API token:" in ln)  # type: ignore[union-attr]
        password = next(re.search(r"password: (\S+)", ln).group(1) for ln in lines if "password:" in ln)  # type: ignore[union-attr]
        with httpx.Client(base_url=url + "/api2/json") as client:
            anonymous = client.get("/version")
            assert (anonymous.status_code, anonymous.reason_phrase, anonymous.content) == (
                401,
                "No ticket",
                b"",
            )
            authed = client.get("/version", headers={"Authorization": f"PVEAPIToken={token}"})
            assert authed.json()["data"]["version"].startswith("8.")
            login = client.post("/access/ticket", data={"username": "root@pam", "password": password})
            assert login.json()["data"]["ticket"].startswith("PVE:root@pam:")
    finally:
        stop(proc)
    again, _, second = serve(tmp_path, "--state", str(state))
    stop(again)
    assert not [ln for ln in second if "shown once" in ln]  # an existing cluster keeps its secrets


def test_a_fault_file_makes_clones_fail_like_pve(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text(
        '[[tasks]]\ntask_type = "qmclone"\nfailure_rate = 1.0\nmessage = "clone failed: disk full"\n'
    )
    proc, url, _ = serve(
        tmp_path, "--token", "root@pam!ft=5e1f0c2a-8b3d-4f6e-9a7c-1d2e3f405162", "--faults", str(faults)
    )
    headers = {"Authorization": "PVEAPIToken=root@pam!ft=5e1f0c2a-8b3d-4f6e-9a7c-1d2e3f405162"}
    try:
        with httpx.Client(base_url=url + "/api2/json", headers=headers) as client:
            upid = client.post("/nodes/pve1/qemu/9000/clone", data={"newid": 300}).json()["data"]
            status = client.get(f"/nodes/pve1/tasks/{upid}/status").json()["data"]
            while status["status"] == "running":  # at 100x a linked clone ends within a few polls
                status = client.get(f"/nodes/pve1/tasks/{upid}/status").json()["data"]
            assert status["exitstatus"] == "clone failed: disk full"
            gone = client.get("/nodes/pve1/qemu/300/config")
            assert (gone.status_code, gone.reason_phrase) == (
                500,
                "Configuration file 'nodes/pve1/qemu-server/300.conf' does not exist",
            )
    finally:
        stop(proc)


def test_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "autovibe", "sim", "serve", "--token", "no-bang-here"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "USER@REALM!NAME=SECRET" in done.stderr and "Traceback" not in done.stderr
