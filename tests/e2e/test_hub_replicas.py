"""Two hub replicas on one PostgreSQL and one (served, HTTPS) simulated PVE, as real processes.

Only one leads; a fleet deploy submitted to one replica is watched (SSE) from the other and runs
exactly once; SIGKILLing the leader hands the lead to the survivor, which also undoes the dead
replica's half-done work: a replica killed in the middle of a fleet deploy leaves its job failed
("replica stopped") and nothing of the fleet in PVE or the store. Ctrl-C on the remote CLI while it
follows a deploy cancels the job, which undoes what it started, and exits 130.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.security.identity import add_user, bind, create_token, server_key_from
from autovibe.store.db import Database
from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim, start_sim
from tests.e2e.hub_server import HubProcess
from tests.fakes import sse
from tests.fakes.postgres import PostgresServer, PostgresUnavailable

pytestmark = pytest.mark.e2e
API = "/api/v1"
DEADLINE_S = 60.0


@dataclass
class Replica:
    served: HubProcess
    url: str

    @property
    def proc(self) -> subprocess.Popen[str]:
        return self.served.proc

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30)

    def ready(self) -> dict[str, Any]:
        return dict(self.get("/readyz").json())


@dataclass
class Cluster:
    database_url: str
    sim: ServedSim
    token: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    tmp = tmp_path_factory.mktemp("replicas")
    sim_proc, sim = start_sim(tmp / "sim")
    try:
        url = server.url(server.create_database())
        key_file = tmp / "token.key"
        db = Database.open(url)
        add_user(db, "alice")
        bind(db, "alice", "admin")
        _read, token = create_token(db, "alice", key=server_key_from(key_file))
        from autovibe.machines.models import ProjectCreate
        from autovibe.machines.projects import create as create_project

        create_project(db=db, request=ProjectCreate(name="alpha"))
        db.dispose()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HOME": str(tmp),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_DATA_HOME": str(tmp / "data"),
            "AUTOVIBE_DATABASE_URL": url,
            "AUTOVIBE_PVE_URL": sim.url,
            "AUTOVIBE_PVE_TOKEN": f"root@pam!{TOKEN_NAME}={TOKEN_SECRET}",
            "AUTOVIBE_FINGERPRINT": sim.fingerprint,
            "AUTOVIBE_TOKEN_KEY_FILE": str(key_file),
            "AUTOVIBE_HUB__LEADER_POLL_S": "0.2",
            "AUTOVIBE_HUB__HEARTBEAT_S": "0.2",
            "AUTOVIBE_HUB__REPLICA_TIMEOUT_S": "3",
            "AUTOVIBE_HUB__JOB_POLL_S": "0.05",
            "AUTOVIBE_HUB__EVENTS_POLL_S": "0.05",
            "AUTOVIBE_HUB__TICK_INTERVAL_S": "3600",
        }
        yield Cluster(url, sim, token, env)
    finally:
        sim_proc.terminate()
        sim_proc.wait(timeout=10)
        if sim_proc.stdout:
            sim_proc.stdout.close()
        server.stop()


def start_replica(cluster: Cluster) -> Replica:
    served = HubProcess(cluster.env, Path(cluster.env["HOME"]))
    return Replica(served, served.url())


def stop(replica: Replica) -> None:
    replica.served.stop()


def until(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` (each poll is a real request) until it is truthy; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # a poll interval, not a timing assumption: the deadline is what can fail
    raise AssertionError(f"timed out waiting for {what}")


def follow(replica: Replica, token: str, job_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream(
        "GET", f"{replica.url}{API}/jobs/{job_id}/events", headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        for kind, payload in sse.events(response.iter_lines()):
            if kind == "end":
                return events, payload
            events.append({"event": kind, **payload})
    raise AssertionError("event stream ended without 'end'")


def leaders(replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if r.proc.poll() is None and r.ready()["leader"]]


def test_two_replicas_one_leader_shared_jobs_and_handover(cluster: Cluster) -> None:
    a, b = start_replica(cluster), start_replica(cluster)
    try:
        until(lambda: len(leaders([a, b])) == 1, "one leader")
        assert len(leaders([a, b])) == 1  # and still exactly one a moment later
        leader = leaders([a, b])[0]
        follower = b if leader is a else a
        assert not follower.ready()["leader"]

        # A fleet submitted to the follower, watched from the leader.
        body = {"name": "rep", "profile": "claude_code", "project": "alpha", "count": 3}
        headers = {"Authorization": f"Bearer {cluster.token}"}
        submitted = httpx.post(f"{follower.url}{API}/machines", json=body, headers=headers, timeout=30)
        assert submitted.status_code == 202, submitted.text
        events, job = follow(leader, cluster.token, submitted.json()["id"])
        assert job["status"] == "succeeded", job
        assert sorted(o["name"] for o in job["result"]["outcomes"]) == ["rep-1", "rep-2", "rep-3"], job
        assert job["result"]["ok"], json.dumps(job["result"])
        # Ran once: one claim, one "running" status, each machine's steps once each.
        assert [e["status"] for e in events if e["event"] == "status"] == ["running", "succeeded"]
        steps = [(e["machine"], e["index"]) for e in events if e["event"] == "step"]
        assert len(steps) == len(set(steps))
        # Both replicas see the same machines, and PVE holds each exactly once.
        for replica in (a, b):
            listed = replica.get(f"{API}/machines?project=alpha", cluster.token).json()
            assert sorted(m["name"] for m in listed) == ["rep-1", "rep-2", "rep-3"]
        pve = httpx.get(
            f"{cluster.sim.url}/api2/json/cluster/resources?type=vm",
            headers={"Authorization": f"PVEAPIToken=root@pam!{TOKEN_NAME}={TOKEN_SECRET}"},
            verify=False,  # the simulator's self-signed certificate; only this raw check skips it
            timeout=30,
        ).json()["data"]
        names = [vm.get("name") for vm in pve]
        assert sorted(n for n in names if n and n.startswith("rep-")) == ["rep-1", "rep-2", "rep-3"]

        # Kill the leader hard: the survivor takes the lead and keeps serving.
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        until(lambda: follower.ready()["leader"], "the survivor to lead")
        again = httpx.post(
            f"{follower.url}{API}/machines",
            json={"name": "after", "profile": "claude_code", "project": "alpha"},
            headers=headers,
            timeout=30,
        )
        assert again.status_code == 202
        _events, job = follow(follower, cluster.token, again.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["replica"] == follower.ready()["replica"]
    finally:
        stop(a)
        stop(b)


def first_step(replica: Replica, token: str, job_id: str) -> dict[str, Any]:
    """Read the job's events until its first ``step`` event (the job is under way), then hang up."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream(
        "GET", f"{replica.url}{API}/jobs/{job_id}/events", headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        for kind, payload in sse.events(response.iter_lines()):
            assert kind != "end", f"the job ended before its first step: {payload}"
            if kind == "step":
                return payload
    raise AssertionError("event stream ended without a 'step' event")


def pve_names(cluster: Cluster, prefix: str) -> list[str]:
    """The VMs PVE (the served simulator) holds whose name starts with ``prefix``."""
    pve = httpx.get(
        f"{cluster.sim.url}/api2/json/cluster/resources?type=vm",
        headers={"Authorization": f"PVEAPIToken=root@pam!{TOKEN_NAME}={TOKEN_SECRET}"},
        verify=False,  # the simulator's self-signed certificate; only this raw check skips it
        timeout=30,
    ).json()["data"]
    return sorted(str(vm["name"]) for vm in pve if str(vm.get("name", "")).startswith(prefix))


def sim_clock(cluster: Cluster, *, speed: float | None = None) -> dict[str, Any]:
    """The served simulator's clock (``POST /_sim/clock``), set to ``speed`` when given."""
    answer = httpx.post(
        f"{cluster.sim.url}/_sim/clock",
        json={} if speed is None else {"speed": speed},
        verify=False,  # the simulator's self-signed certificate; a test-only admin call
        timeout=30,
    )
    answer.raise_for_status()
    return dict(answer.json()["data"])


def fleet_operations(replica: Replica, token: str, prefix: str) -> list[dict[str, Any]]:
    listed = replica.get(f"{API}/operations?limit=1000", token).json()
    return [
        op
        for op in listed
        if op["kind"] == "machine.deploy" and str(op["params"].get("name", "")).startswith(prefix)
    ]


def test_a_replica_killed_mid_deploy_is_undone_by_the_survivor(cluster: Cluster) -> None:
    a, b = start_replica(cluster), start_replica(cluster)
    try:
        until(lambda: len(leaders([a, b])) == 1, "one leader")
        ids = {a.ready()["replica"]: a, b.ready()["replica"]: b}
        body = {"name": "kill", "profile": "claude_code", "project": "alpha", "count": 3}
        headers = {"Authorization": f"Bearer {cluster.token}"}
        # PVE's clock stands still while the job runs, so no clone task can finish and the fleet cannot
        # complete before its replica is killed, however slow or fast this machine is.
        speed = sim_clock(cluster)["speed"]
        sim_clock(cluster, speed=0)
        try:
            submitted = httpx.post(f"{a.url}{API}/machines", json=body, headers=headers, timeout=30)
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            first_step(a, cluster.token, job_id)  # it is under way
            # Either replica may have claimed it (both run workers): kill the one running it.
            runner_id = str(a.get(f"{API}/jobs/{job_id}", cluster.token).json()["replica"])
            runner = ids[runner_id]
            survivor_id, survivor = next((rid, r) for rid, r in ids.items() if r is not runner)
            runner.proc.send_signal(signal.SIGKILL)
            runner.proc.wait(timeout=10)
        finally:
            sim_clock(cluster, speed=speed)  # the survivor's undo needs PVE's tasks to run again

        def ended() -> dict[str, Any] | None:
            job = dict(survivor.get(f"{API}/jobs/{job_id}", cluster.token).json())
            return job if job["status"] not in ("queued", "running") else None

        job = until(ended, "the survivor to fail the dead replica's job")
        assert job["status"] == "failed" and job["replica"] == runner_id, job
        assert job["error"]["kind"] == "unavailable", job
        assert f"replica running this job ({runner_id}) stopped" in job["error"]["message"], job
        assert survivor.ready()["leader"]

        # The survivor resumed the dead replica's journaled deploys: each is undone, by the survivor.
        def all_undone() -> list[dict[str, Any]] | None:
            ops = fleet_operations(survivor, cluster.token, "kill-")
            return ops if ops and all(op["status"] == "compensated" for op in ops) else None

        operations = until(all_undone, "the dead replica's deploy operations to be undone")
        assert {op["owner"] for op in operations} == {survivor_id}, operations
        assert fleet_operations(survivor, cluster.token, "kill-") == operations  # nothing started since
        # Nothing of the fleet is left: no VM in PVE, no machine record in the store.
        assert pve_names(cluster, "kill-") == []
        listed = survivor.get(f"{API}/machines?project=alpha", cluster.token).json()
        assert [m["name"] for m in listed if m["name"].startswith("kill-")] == []
    finally:
        stop(a)
        stop(b)


def test_ctrl_c_cancels_a_remote_deploy_and_follows_it_to_its_end(cluster: Cluster, tmp_path: Path) -> None:
    hub = start_replica(cluster)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
        env.update(
            PYTHONUNBUFFERED="1", NO_COLOR="1", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
            XDG_DATA_HOME=str(tmp_path / "data"), AUTOVIBE_TOKEN=cluster.token,
        )  # fmt: skip
        cmd = [
            sys.executable, "-m", "autovibe", "--hub", hub.url, "machine", "create",
            "--profile", "claude_code", "--project", "alpha", "--name", "ctrlc", "--count", "3",
        ]  # fmt: skip
        cli = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:

            def running() -> str | None:
                jobs = hub.get(f"{API}/jobs?status=running", cluster.token).json()
                ours = [j for j in jobs if j["params"].get("request", {}).get("name") == "ctrlc"]
                return str(ours[0]["id"]) if ours else None

            job_id = until(running, "the CLI's deploy to run on the hub")
            first_step(hub, cluster.token, job_id)
            cli.send_signal(signal.SIGINT)  # Ctrl-C, once
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.communicate(timeout=10)
        assert cli.returncode == 130, out + err
        assert f"cancelling job {job_id}" in out, out + err
        # It followed the job to its end and printed the outcomes, as a local Ctrl-C does.
        assert "Deployed 0 of 3" in out and "(stopped by Ctrl-C)" in out, out + err
        assert re.search(r"^ctrlc-1\s+(undone|skipped)\b", out, re.M), out
        job = hub.get(f"{API}/jobs/{job_id}", cluster.token).json()
        assert job["status"] == "cancelled" and job["error"]["kind"] == "cancelled", job
        assert {o["status"] for o in job["result"]["outcomes"]} <= {"undone", "skipped"}, job
        assert pve_names(cluster, "ctrlc-") == []
        listed = hub.get(f"{API}/machines?project=alpha", cluster.token).json()
        assert [m["name"] for m in listed if m["name"].startswith("ctrlc-")] == []
    finally:
        stop(hub)
