"""Cancelling jobs through the API: a queued job never runs; a running fleet deploy is undone (machines
in flight compensated, nothing left in PVE or the store); a finished job cannot be cancelled; only the
submitter or someone who may resume operations in the job's project may cancel.

And the remote CLI's Ctrl-C: the first asks the hub to cancel and follows the job to its end, the
second detaches."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from autovibe.api.app import create_app
from autovibe.cli.errors import exit_code_for
from autovibe.hub.jobs import JobStatus
from autovibe.hub.service import Hub
from autovibe.machines.deploy import KIND
from autovibe.machines.models import ProjectCreate
from autovibe.machines.projects import create as create_project
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus
from autovibe.settings import Settings
from autovibe.store import repositories as repo
from tests.fakes.sse import aevents
from tests.integration.api.conftest import API, ClientFor, follow, hub_settings

SLOW_SIM = 25.0
"""Simulator speed for the running-deploy test: slow enough that a deploy is still running when the
cancel arrives (a clone takes simulated seconds), fast enough that its undo takes about a second."""


@pytest.fixture
def hub_options() -> dict[str, Any]:
    """How a test's hub is opened; a test overrides it with ``@pytest.mark.parametrize``."""
    return {}


@pytest.fixture
def settings(tmp_path: Any, hub_options: dict[str, Any]) -> Settings:
    base = hub_settings(tmp_path)
    speed = hub_options.get("sim_speed")
    return base if speed is None else base.model_copy(update={"sim_speed": speed})


@pytest.fixture
async def hub(settings: Settings, hub_options: dict[str, Any]) -> AsyncIterator[Hub]:
    async with Hub.open(settings, loops=hub_options.get("loops", True)) as running:
        create_project(db=running.db, request=ProjectCreate(name="alpha"))
        create_project(db=running.db, request=ProjectCreate(name="beta"))
        yield running


def fleet(name: str, count: int = 1) -> dict[str, Any]:
    return {"name": name, "profile": "claude_code", "project": "alpha", "count": count}


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post(f"{API}/machines", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def vm_names(hub: Hub, prefix: str) -> list[str]:
    return sorted(
        str(vm.name) for vm in await hub.connection.pve.cluster_resources(type="vm") if vm.name and
        str(vm.name).startswith(prefix)
    )  # fmt: skip


# ---- a queued job ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hub_options", [{"loops": False}])
async def test_a_queued_job_is_cancelled_at_once_and_never_runs(hub: Hub, client_for: ClientFor) -> None:
    alice = await client_for("operator", "alpha")
    job_id = await submit(alice, fleet("queued"))
    assert (await alice.get(f"{API}/jobs/{job_id}")).json()["status"] == "queued"

    response = await alice.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "cancelled" and job["finished_at"] and job["started_at"] is None
    assert job["cancel_requested_by"] == job["actor"] and job["cancel_requested_at"]
    assert job["error"]["kind"] == "cancelled" and "before it started" in job["error"]["message"]
    events, end = await follow(alice, job_id)
    assert [(kind, data["status"]) for kind, data in events] == [
        ("status", "cancelling"),
        ("status", "cancelled"),
    ]
    assert end["status"] == "cancelled"

    again = await alice.post(f"{API}/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "conflict"

    # A worker starts: it takes the next job (queued after the cancelled one), never the cancelled one.
    hub.start(lead=False)
    later = await submit(alice, fleet("later"))
    _events, done = await follow(alice, later)
    assert done["status"] == "succeeded", done
    after = hub.jobs.get(job_id)
    assert after.status is JobStatus.CANCELLED and after.replica is None and after.started_at is None
    assert [e.data["status"] for e in hub.jobs.events(job_id)] == ["cancelling", "cancelled"]
    assert await vm_names(hub, "queued") == []
    assert [job.id for job in hub.jobs.recent(status=JobStatus.CANCELLED)] == [job_id]


# ---- a running fleet deploy ------------------------------------------------------------------------
class StreamingASGI(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` hands a response over only once the app finished it, so an event stream
    cannot be read while its job runs. This one runs the app in a task and streams its body chunks as
    they are sent; closing the response disconnects the client, as a real one would."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([chunk async for chunk in request.stream])
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        disconnected = asyncio.Event()
        pending = [body]

        async def receive() -> dict[str, Any]:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.set_result((message["status"], list(message.get("headers", []))))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                if not started.done():
                    started.set_exception(exc)
            finally:
                chunks.put_nowait(None)

        task = asyncio.create_task(run())
        status, headers = await started
        return httpx.Response(status, headers=headers, stream=_Chunks(chunks, task, disconnected))


class _Chunks(httpx.AsyncByteStream):
    def __init__(
        self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], disconnected: asyncio.Event
    ) -> None:
        self.chunks, self.task, self.disconnected = chunks, task, disconnected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk

    async def aclose(self) -> None:
        self.disconnected.set()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def follow_and_cancel(
    client: httpx.AsyncClient, job_id: str
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any], dict[str, Any]]:
    """Follow a job's events; at its first ``step`` event, cancel it (while the stream stays open).
    Returns the events, the cancel's answer and the finished job."""
    events: list[tuple[str, dict[str, Any]]] = []
    answer: dict[str, Any] = {}
    async with client.stream("GET", f"{API}/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        async for kind, payload in aevents(response.aiter_lines()):
            if kind == "end":
                return events, answer, payload
            events.append((kind, payload))
            if kind == "step" and not answer:
                cancelled = await client.post(f"{API}/jobs/{job_id}/cancel")
                assert cancelled.status_code == 200, cancelled.text
                answer = cancelled.json()
    raise AssertionError("the event stream ended without an 'end' event")


@pytest.mark.parametrize("hub_options", [{"sim_speed": SLOW_SIM}])
async def test_cancelling_a_running_fleet_undoes_what_it_started(
    hub: Hub, settings: Settings, client_for: ClientFor
) -> None:
    alice = await client_for("operator", "alpha")
    job_id = await submit(alice, fleet("cx", count=3))
    transport = StreamingASGI(create_app(settings, hub=hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", headers=alice.headers) as live:
        events, answer, job = await follow_and_cancel(live, job_id)

    # The cancel was accepted while the job ran; the replica running it then cancelled its task.
    assert answer["status"] == "running" and answer["cancel_requested_at"], answer
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses == ["running", "cancelling", "cancelled"], statuses
    assert job["status"] == "cancelled", job
    assert job["error"]["kind"] == "cancelled" and "undone" in job["error"]["message"]

    # What it did: every machine undone (it was in flight) or skipped (not started); none deployed.
    outcomes = {o["name"]: o for o in job["result"]["outcomes"]}
    assert sorted(outcomes) == ["cx-1", "cx-2", "cx-3"] and job["result"]["ok"] is False
    assert {o["status"] for o in outcomes.values()} <= {"undone", "skipped"}, outcomes
    assert any(o["status"] == "undone" for o in outcomes.values()), outcomes
    machine_events = {data["name"]: data["status"] for kind, data in events if kind == "machine"}
    assert machine_events == {name: o["status"] for name, o in outcomes.items()}

    # Nothing left behind: no VM in PVE, no machine record, every operation compensated.
    assert await vm_names(hub, "cx-") == []
    with hub.db.session() as session:
        assert [n for n in ("cx-1", "cx-2", "cx-3") if repo.machine_by_name(session, n)] == []
    operations = [r for r in Journal(hub.db).recent() if r.kind == KIND]
    assert operations and all(r.status is OpStatus.COMPENSATED for r in operations), operations
    undone = {o["operation_id"] for o in outcomes.values() if o["status"] == "undone"}
    assert undone == {r.id for r in operations}


async def test_a_finished_job_cannot_be_cancelled(client_for: ClientFor) -> None:
    alice = await client_for("operator", "alpha")
    job_id = await submit(alice, fleet("done"))
    _events, job = await follow(alice, job_id)
    assert job["status"] == "succeeded", job
    response = await alice.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict" and "already ended" in response.json()["message"]
    assert (await alice.get(f"{API}/jobs/{job_id}")).json()["status"] == "succeeded"


@pytest.mark.parametrize("hub_options", [{"loops": False}])
async def test_who_may_cancel_a_job(hub: Hub, client_for: ClientFor) -> None:
    alice = await client_for("operator", "alpha")
    job_id = await submit(alice, fleet("guarded"))
    outsider = await client_for("viewer", "beta")  # may not even see it: "not found", as for reads
    response = await outsider.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 404 and response.json()["error"] == "not_found", response.text
    viewer = await client_for("viewer", "alpha")  # sees it (ops.read), may not cancel it (ops.resume)
    response = await viewer.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 403 and response.json()["error"] == "denied", response.text
    assert hub.jobs.get(job_id).status is JobStatus.QUEUED and hub.jobs.cancel_requested(job_id) is None
    unknown = await alice.post(f"{API}/jobs/00000000-0000-0000-0000-000000000000/cancel")
    assert unknown.status_code == 404

    colleague = await client_for("operator", "alpha")  # not the submitter, but ops.resume in alpha
    response = await colleague.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    assert response.json()["cancel_requested_by"] != response.json()["actor"]


# ---- the remote CLI's Ctrl-C -----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def served(hub: Hub, settings: Settings) -> AsyncIterator[str]:
    """The app on a real local port (the CLI's client is synchronous: it runs in a thread)."""
    import uvicorn

    # A socket bound and listening before the server runs: connections wait in its backlog, so there
    # is nothing to wait for.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, hub=hub), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def interrupting(presses: int, notes: list[str]) -> Any:
    """A ``progress`` callback that acts as Ctrl-C (``KeyboardInterrupt``, as the SIGINT handler
    raises it) at the first ``presses`` events after the job's first step."""
    left = [presses]
    stepped = [False]

    def progress(kind: str, data: dict[str, Any]) -> None:
        stepped[0] = stepped[0] or kind == "step"
        if stepped[0] and left[0] > 0:
            left[0] -= 1
            notes.append(f"<Ctrl-C at {kind} {data.get('status') or data.get('step')}>")
            raise KeyboardInterrupt

    return progress


def run_cli_client(url: str, secret: str, presses: int, *, keep_partial: bool) -> dict[str, Any]:
    """Submit a fleet as the CLI does and follow it, pressing Ctrl-C ``presses`` times; what came of
    it: the job or the KeyboardInterrupt, the notes shown, and ``interrupted``."""
    from autovibe.cli.remote import HubClient

    notes: list[str] = []
    accepted: list[str] = []
    outcome: dict[str, Any] = {"notes": notes, "accepted": accepted}
    with HubClient(Settings(hub_url=url, token=secret)) as client:
        try:
            outcome["job"] = client.submit_and_follow(
                "POST",
                "/machines",
                json_body=fleet("ctl", count=3),
                progress=interrupting(presses, notes),
                on_accepted=accepted.append,
                keep_partial=keep_partial,
                note=notes.append,
            )
        except KeyboardInterrupt as exc:  # never let it out of the thread: it would stop the loop
            outcome["raised"] = exc
        outcome["interrupted"] = client.interrupted
    return outcome


@pytest.mark.parametrize("hub_options", [{"sim_speed": SLOW_SIM}])
async def test_first_ctrl_c_cancels_the_remote_job_and_follows_it_to_its_end(
    hub: Hub, settings: Settings, client_for: ClientFor
) -> None:
    alice = await client_for("operator", "alpha")
    secret = alice.headers["Authorization"].removeprefix("Bearer ")
    async with served(hub, settings) as url:
        outcome = await asyncio.to_thread(run_cli_client, url, secret, 1, keep_partial=True)
    job_id = outcome["accepted"][0]
    assert "raised" not in outcome and outcome["interrupted"] is True, outcome
    job = outcome["job"]
    assert job["status"] == "cancelled" and job["id"] == job_id, job
    assert {o["status"] for o in job["result"]["outcomes"]} <= {"undone", "skipped"}, job
    assert any(n.startswith(f"cancelling job {job_id}") for n in outcome["notes"]), outcome["notes"]
    assert await vm_names(hub, "ctl-") == []
    assert exit_code_for(KeyboardInterrupt()) == 130  # what the command then exits with

    # Without a partial result to show (keep_partial off), the outcome is noted and the CLI exits 130.
    async with served(hub, settings) as url:
        plain = await asyncio.to_thread(run_cli_client, url, secret, 1, keep_partial=False)
    assert isinstance(plain.get("raised"), KeyboardInterrupt), plain
    assert plain["notes"][-1].startswith(f"job {plain['accepted'][0]} cancelled: cancelled by"), plain


@pytest.mark.parametrize("hub_options", [{"sim_speed": SLOW_SIM}])
async def test_second_ctrl_c_detaches_and_the_cancel_goes_on(
    hub: Hub, settings: Settings, client_for: ClientFor
) -> None:
    alice = await client_for("operator", "alpha")
    secret = alice.headers["Authorization"].removeprefix("Bearer ")
    async with served(hub, settings) as url:
        outcome = await asyncio.to_thread(run_cli_client, url, secret, 2, keep_partial=True)
    job_id = outcome["accepted"][0]
    assert isinstance(outcome.get("raised"), KeyboardInterrupt) and "job" not in outcome, outcome
    notes = outcome["notes"]
    assert notes[1].startswith(f"cancelling job {job_id}") and notes[-1].startswith(
        f"detached: job {job_id} goes on on the hub"
    ), notes
    # Detached after asking: the hub still cancels it, and undoes what it started.
    _events, job = await follow(alice, job_id)
    assert job["status"] == "cancelled", job
    assert await vm_names(hub, "ctl-") == []
