"""The CLI's client of a remote hub (``--hub URL`` / ``AUTOVIBE_HUB_URL``): the same commands and output,
with the work done by the hub's REST API instead of a local store and PVE connection.

:class:`HubClient` speaks HTTP with the caller's API token (``AUTOVIBE_TOKEN``) and turns the hub's error
bodies back into the autovibe error kinds the local code raises, so exit codes and one-line messages are
the same either way. Long work is a job: :meth:`HubClient.submit_and_follow` posts it, follows its
Server-Sent Events (feeding a progress callback) and returns the finished job, raising its error kind when
it failed.

The functions below it are the remote halves of the commands: each rebuilds the models the local code
returns (``MachineRead``, ``DeployOutcome``, ``ProjectView``, ``OperationRecord``), so the commands keep a
single rendering path. Commands without a remote half refuse ``--hub`` (:func:`refuse_unsupported`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from autovibe.errors import (
    AutovibeConflict,
    AutovibeDenied,
    AutovibeError,
    AutovibeInvalid,
    AutovibeNotFound,
    AutovibeUnavailable,
)

if TYPE_CHECKING:
    import ssl

    import httpx

    from autovibe.cli.fleet_progress import FleetDisplay
    from autovibe.machines.fleet import DeployOutcome
    from autovibe.machines.models import MachineCreate, MachineRead, ProjectCreate
    from autovibe.machines.projects import ProjectView
    from autovibe.operations.models import OperationRecord
    from autovibe.settings import Settings

API_PREFIX = "/api/v1"
READ_TIMEOUT_S = 60.0
"""Reads wait up to a minute (PVE-backed reads can be slow; SSE sends a keepalive every 15 s)."""
CONNECT_TIMEOUT_S = 10.0
MAX_RATE_RETRIES = 5
MAX_RETRY_WAIT_S = 30.0
MAX_STREAM_RECONNECTS = 5
NO_TOKEN = "set AUTOVIBE_TOKEN to an API token (autovibe token create)"
TOKEN_HINT = (
    "check AUTOVIBE_TOKEN: it must be a live API token of a user of this hub "
    "(an admin makes one on the hub host: autovibe token create USER)"
)

ProgressCallback = Callable[[str, dict[str, Any]], None]
"""Called with each job event's kind (``step``, ``machine``, ``status``...) and its data."""


class NotSupportedRemotely(AutovibeInvalid):
    """A command that only runs next to the store and PVE was given ``--hub``: exit code 2."""


# ---- errors ----------------------------------------------------------------------------------------
_KINDS: dict[str, type[AutovibeError]] = {
    "invalid": AutovibeInvalid,
    "unauthorized": AutovibeDenied,
    "denied": AutovibeDenied,
    "not_found": AutovibeNotFound,
    "conflict": AutovibeConflict,
    "unavailable": AutovibeUnavailable,
    "rate_limited": AutovibeUnavailable,
}
_KIND_BY_STATUS = {400: "invalid", 401: "unauthorized", 403: "denied", 404: "not_found", 409: "conflict"}


def error_for(kind: str, message: str, hint: str | None = None, details: Any = None) -> AutovibeError:
    """The local error kind for a hub error body or a failed job's error: the same exit code and line.

    ``approval_required`` becomes the gate's own ``ApprovalRequired`` (exit 3, its hint says how to get
    the approval); ``unauthorized`` a denial whose hint points at the token; ``failed``, ``upstream`` and
    ``internal`` plain autovibe errors (exit 1) -- a job that failed inside a journaled operation (its
    ``details`` name the ``operation_id``) an ``OperationFailed`` naming it, as a local run raises."""
    operation_id = details.get("operation_id") if isinstance(details, dict) else None
    if operation_id and kind in ("failed", "upstream"):
        from autovibe.operations.errors import OperationFailed

        return OperationFailed(message, operation_id=str(operation_id), step="", compensated=False, hint=hint)
    if kind == "approval_required":
        from autovibe.security.gate import ApprovalRequired

        approval_id = details.get("approval_id") if isinstance(details, dict) else None
        return ApprovalRequired(message, approval_id=str(approval_id or ""), hint=hint)
    if kind == "unauthorized":
        return AutovibeDenied(message, hint=TOKEN_HINT)
    return _KINDS.get(kind, AutovibeError)(message, hint=hint)


def _error_from_response(response: httpx.Response) -> AutovibeError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str):
        hint = body.get("hint")
        return error_for(
            body["error"], body["message"], hint if isinstance(hint, str) else None, body.get("details")
        )
    # Not the hub's error body (a proxy in between?): the status decides the kind.
    status = response.status_code
    kind = _KIND_BY_STATUS.get(status, "unavailable" if status in (502, 503, 504) else "failed")
    return error_for(kind, f"the hub answered HTTP {status} {response.reason_phrase}".strip())


# ---- the client ------------------------------------------------------------------------------------
@dataclass
class _SseEvent:
    kind: str = "message"
    data: list[str] = field(default_factory=list)
    id: int | None = None


class HubClient:
    """A hub's ``/api/v1`` as the caller of ``settings.token``. Use as a context manager (or ``close``).

    ``transport`` replaces the network (tests may pass an ``httpx.MockTransport`` or an ASGI one)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx  # here, not at import time: `autovibe --help` must not pay for it

        if settings.hub_url is None:
            raise AutovibeInvalid("no hub URL: pass --hub URL or set AUTOVIBE_HUB_URL")
        if settings.token is None:
            raise AutovibeInvalid(NO_TOKEN)
        self.url = settings.hub_url.rstrip("/")
        self._sleep = sleep
        self.interrupted = False
        """Whether Ctrl-C was pressed while the last :meth:`submit_and_follow` followed its job."""
        verify: ssl.SSLContext | bool = True  # TLS verification is always on for https
        if settings.hub_ca_bundle is not None:
            import ssl  # here: local commands import this module, and never need it

            try:
                verify = ssl.create_default_context(cafile=str(settings.hub_ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise AutovibeInvalid(
                    f"hub_ca_bundle: cannot use {settings.hub_ca_bundle} as a PEM CA bundle ({exc})"
                ) from None
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": "autovibe-cli",
            },
            verify=verify,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            follow_redirects=False,  # a redirect must not carry the token elsewhere
        )

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plain requests --------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Send one request (waiting out 429s, at most :data:`MAX_RATE_RETRIES` times) and return the
        2xx response; any other answer raises its autovibe error kind."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(MAX_RATE_RETRIES + 1):
            with self._transport_errors():
                response = self._http.request(method, path, json=json_body, params=query)
            if response.status_code == 429 and attempt < MAX_RATE_RETRIES:
                self._sleep(_retry_after(response))
                continue
            if response.is_success:
                return response
            raise _error_from_response(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body).json()

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json_body=body).json()

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params).json()

    # ---- jobs ------------------------------------------------------------------------------------
    def submit_and_follow(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        on_accepted: Callable[[str], None] | None = None,
        keep_partial: bool = False,
        note: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Submit a job (the hub answers 202), follow its events to the end and return the finished job.

        ``progress`` gets every event but the final ``end``; ``on_accepted`` the job id as soon as it is
        known. A failed job raises the error kind of its ``error.kind`` -- unless ``keep_partial`` and it
        kept a ``result`` (some of its parts failed, as a fleet's machines): then it is returned.

        Ctrl-C while following: the first asks the hub to cancel the job (its operations undo what they
        had started) and keeps following it to its end; then the job is returned if ``keep_partial`` and
        it kept a ``result`` (:attr:`interrupted` tells the caller to exit 130), else its outcome is
        noted and ``KeyboardInterrupt`` raised (exit 130). A second Ctrl-C detaches: the job id is noted
        and ``KeyboardInterrupt`` raised. ``note`` shows those lines (default: stderr)."""
        say = note if note is not None else _note
        accepted = self.request(method, path, json_body=json_body, params=params).json()
        job_id = str(accepted["id"])
        if on_accepted is not None:
            on_accepted(job_id)
        job = self._follow_interruptible(job_id, progress, say)
        if self.interrupted and not (keep_partial and job.get("result")):
            say(_outcome_line(job_id, job))
            raise KeyboardInterrupt
        if job.get("status") != "succeeded" and not (keep_partial and job.get("result")):
            error = job.get("error") or {}
            raise error_for(
                str(error.get("kind", "failed")),
                str(error.get("message") or f"job {job_id} {job.get('status', 'failed')}"),
                error.get("hint"),
                error.get("details"),
            )
        return job

    def _follow_interruptible(
        self, job_id: str, progress: ProgressCallback | None, say: Callable[[str], None]
    ) -> dict[str, Any]:
        """:meth:`follow` to the end, with the two meanings of Ctrl-C (see :meth:`submit_and_follow`).
        A press while asking the hub to cancel counts as the second one."""
        cursor = [0]
        self.interrupted = False
        while True:
            try:
                if self.interrupted:
                    self._ask_cancel(job_id, say)
                return self.follow(job_id, progress=progress, cursor=cursor)
            except KeyboardInterrupt:
                if self.interrupted:
                    say(
                        f"detached: job {job_id} goes on on the hub "
                        f"(see it at {self.url}{API_PREFIX}/jobs/{job_id})"
                    )
                    raise
                self.interrupted = True
                say(f"cancelling job {job_id}: undoing what it started (Ctrl-C again to detach)")

    def _ask_cancel(self, job_id: str, say: Callable[[str], None]) -> None:
        """``POST /jobs/{id}/cancel``; a job that already ended, or a refusal, is only noted: the
        job's end (followed next) says how it went."""
        try:
            self.request("POST", f"/jobs/{quote(job_id, safe='')}/cancel")
        except AutovibeConflict:
            say(f"job {job_id} had already ended")
        except AutovibeError as exc:
            say(f"could not cancel job {job_id}: {exc.message}")

    def follow(
        self, job_id: str, *, progress: ProgressCallback | None = None, cursor: list[int] | None = None
    ) -> dict[str, Any]:
        """Read the job's Server-Sent Events until its ``end`` event and return the finished job; a
        dropped stream is resumed after the last event seen (``Last-Event-ID``). ``cursor`` (one
        number: the last event seen) lets a caller that stopped following resume where it was."""
        import httpx

        last = cursor if cursor is not None else [0]
        for _attempt in range(MAX_STREAM_RECONNECTS + 1):
            try:
                with closing(self._events(job_id, last[0])) as events:
                    for event in events:
                        if event.id is not None:
                            last[0] = event.id
                        data = json.loads("\n".join(event.data)) if event.data else {}
                        if event.kind == "end":
                            return dict(data)
                        if progress is not None and isinstance(data, dict):
                            progress(event.kind, data)
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
                pass  # resume below
        raise AutovibeUnavailable(
            f"lost the event stream of job {job_id} at {self.url}",
            hint=f"the job goes on; see it at {self.url}{API_PREFIX}/jobs/{job_id}",
        )

    def _events(self, job_id: str, after: int) -> Generator[_SseEvent]:
        path = f"/jobs/{quote(job_id, safe='')}/events"
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        for attempt in range(MAX_RATE_RETRIES + 1):
            with self._transport_errors(), self._http.stream("GET", path, headers=headers) as response:
                if response.status_code == 429 and attempt < MAX_RATE_RETRIES:
                    response.read()
                    wait = _retry_after(response)
                elif not response.is_success:
                    response.read()
                    raise _error_from_response(response)
                else:
                    yield from _parse_sse(response.iter_lines())
                    return
            self._sleep(wait)

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        import httpx

        try:
            yield
        except httpx.TimeoutException:
            raise AutovibeUnavailable(
                f"the hub at {self.url} did not answer in time", hint="is it overloaded? try again"
            ) from None
        except httpx.ConnectError as exc:
            reason = str(exc) or type(exc).__name__
            hint = "is `autovibe serve` running there? check --hub (AUTOVIBE_HUB_URL)"
            if "CERTIFICATE_VERIFY_FAILED" in reason:
                hint = "trust the hub's CA with AUTOVIBE_HUB_CA_BUNDLE=ca.pem (a PEM file)"
            raise AutovibeUnavailable(f"cannot reach the hub at {self.url} ({reason})", hint=hint) from None


def _note(text: str) -> None:
    from autovibe.cli import render

    render.note(text)


def _outcome_line(job_id: str, job: dict[str, Any]) -> str:
    """How an interrupted job ended, in one line."""
    status = str(job.get("status", "ended"))
    error = job.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else None
    if status == "succeeded":
        return f"job {job_id} succeeded before the cancel took effect"
    return f"job {job_id} {status}" + (f": {message}" if message else "")


def _retry_after(response: httpx.Response) -> float:
    try:
        wait = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)


def _parse_sse(lines: Iterator[str]) -> Iterator[_SseEvent]:
    """Server-Sent Events from the stream's lines (comments and ``retry:`` are skipped)."""
    event = _SseEvent()
    for line in lines:
        if not line:
            if event.data or event.kind != "message":
                yield event
            event = _SseEvent()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event.kind = value
        elif name == "data":
            event.data.append(value)
        elif name == "id" and value.isdigit():
            event.id = int(value)
    if event.data:
        yield event


@contextmanager
def connect(settings: Settings) -> Iterator[HubClient]:
    """A :class:`HubClient` for ``settings``, closed afterwards."""
    with HubClient(settings) as client:
        yield client


def segment(value: str) -> str:
    """``value`` as one path segment of a hub URL (a name, vmid or id; ``/`` and the rest escaped)."""
    return quote(value, safe="")


# ---- commands that work remotely, and the guard for the others -------------------------------------
REMOTE_COMMANDS = frozenset(
    {
        "machine create", "machine list", "machine show", "machine start", "machine stop",
        "machine shutdown", "machine reboot", "machine delete", "machine lease",
        "project create", "project list", "project show", "project delete",
        "ops list", "ops show", "ops resume",
    }
)  # fmt: skip


_HUB_INFO: dict[str, dict[str, Any]] = {}


def hub_info(settings: Settings) -> dict[str, Any]:
    """``GET /hub`` (what the hub drives, its replicas), once per process and hub."""
    assert settings.hub_url is not None
    if settings.hub_url not in _HUB_INFO:
        with connect(settings) as hub:
            _HUB_INFO[settings.hub_url] = dict(hub.get("/hub"))
    return _HUB_INFO[settings.hub_url]


REMOTE_AREAS = ("autovibe.cli.remote_checkpoints", "autovibe.cli.remote_usage", "autovibe.cli.remote_admin")
"""Modules with the remote halves of other command groups; each lists its command paths in ``COMMANDS``."""


def remote_commands() -> frozenset[str]:
    """Every command path that works with ``--hub``."""
    import importlib

    names = set(REMOTE_COMMANDS)
    for module in REMOTE_AREAS:
        names |= importlib.import_module(module).COMMANDS
    return frozenset(names)


def refuse_unsupported(command_path: Sequence[str]) -> None:
    """Raise :class:`NotSupportedRemotely` (exit 2) unless ``command_path`` (``["machine", "list"]``,
    without the program name) has a remote half. Call it where settings are loaded when ``hub_url`` is
    set, so a command never silently acts on the local store instead of the hub."""
    command = " ".join(command_path)
    if command not in remote_commands():
        raise NotSupportedRemotely(
            f"`autovibe {command}` does not work with --hub yet; run it on the hub host",
            hint="unset AUTOVIBE_HUB_URL (or drop --hub) to run it against the local configuration",
        )


# ---- machines --------------------------------------------------------------------------------------
def list_machines(settings: Settings, project: str | None) -> list[MachineRead]:
    from autovibe.machines.models import MachineRead

    with connect(settings) as hub:
        if project is not None:
            hub.get(f"/projects/{segment(project)}")  # an unknown project is an error, not an empty list
        return [MachineRead.model_validate(item) for item in hub.get("/machines", project=project)]


def show_machine(settings: Settings, ref: str) -> MachineRead:
    from autovibe.machines.models import MachineRead

    with connect(settings) as hub:
        return MachineRead.model_validate(hub.get(f"/machines/{segment(ref)}"))


def power(
    settings: Settings, ref: str, action: Literal["start", "stop", "shutdown", "reboot"]
) -> MachineRead:
    from autovibe.machines.models import MachineRead

    with connect(settings) as hub:
        job = hub.submit_and_follow("POST", f"/machines/{segment(ref)}/power", json_body={"action": action})
    return MachineRead.model_validate(job["result"]["machine"])


@dataclass(frozen=True)
class Deleted:
    name: str
    vmid: int
    operation_id: str


def delete_machine(settings: Settings, ref: str, approval: str | None) -> Deleted:
    """Delete the machine as a hub job; its vmid is read first (the job's result names the machine)."""
    with connect(settings) as hub:
        before = hub.get(f"/machines/{segment(ref)}")
        job = hub.submit_and_follow("DELETE", f"/machines/{segment(ref)}", params={"approval": approval})
    result = job.get("result") or {}
    return Deleted(
        name=str(result.get("name", before["name"])),
        vmid=int(result.get("vmid", before["vmid"])),
        operation_id=str(result.get("operation_id", "")),
    )


def extend_lease(settings: Settings, ref: str, ttl: timedelta) -> tuple[str, datetime]:
    with connect(settings) as hub:
        lease = hub.post(f"/machines/{segment(ref)}/extend", {"ttl": f"{int(ttl.total_seconds())}s"})
    return str(lease["name"]), datetime.fromisoformat(str(lease["expires_at"]))


def deploy(
    settings: Settings, request: MachineCreate, display: FleetDisplay
) -> tuple[list[DeployOutcome], int]:
    """``machine create`` on the hub: each SSE ``step`` event moves ``display``; returns the outcomes
    and the Ctrl-C presses (1 when the first one cancelled the job: machines in flight were undone,
    unstarted ones skipped, as the outcomes say; a second press detaches, the deploy going on).

    A request the hub refuses before any machine starts (bad field, unknown profile, project or node) is
    the command's one-line ``BadInput`` (exit 2), as locally."""
    from autovibe.cli.commands.project import refuse
    from autovibe.cli.fleet_progress import REQUEST_FLAGS
    from autovibe.machines.fleet import DeployOutcome

    job_ids: list[str] = []

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "step" and data.get("machine"):
            display(str(data["machine"]), str(data["step"]), int(data["index"]), int(data["total"]))

    body = request.model_dump(mode="json", exclude_none=True)
    with connect(settings) as hub:
        try:
            job = hub.submit_and_follow(
                "POST",
                "/machines",
                json_body=body,
                progress=progress,
                on_accepted=job_ids.append,
                keep_partial=True,  # some machines failed: the outcomes say which, as locally
                note=display.note,
            )
        except (AutovibeInvalid, AutovibeNotFound) as exc:
            if display.started:
                raise
            raise refuse(exc, REQUEST_FLAGS) from None
        except KeyboardInterrupt:
            if not job_ids:  # before the hub answered: whether it queued the deploy is unknown
                display.note("interrupted: see `autovibe machine list` for what the hub deployed")
            raise
    outcomes = [DeployOutcome(**item) for item in job["result"]["outcomes"]]
    return outcomes, 1 if hub.interrupted else 0


# ---- projects --------------------------------------------------------------------------------------
def _project_view(data: dict[str, Any]) -> ProjectView:
    """A project as the hub answers it: its fields with ``machines`` (names, or machines with a name)."""
    from autovibe.machines.models import ProjectRead
    from autovibe.machines.projects import ProjectView

    fields = data.get("project") if isinstance(data.get("project"), dict) else data
    assert isinstance(fields, dict)
    machines = data.get("machines") or []
    names = tuple(str(m["name"]) if isinstance(m, dict) else str(m) for m in machines)
    project = ProjectRead.model_validate({k: fields[k] for k in ProjectRead.model_fields if k in fields})
    return ProjectView(project, names)


def list_projects(settings: Settings) -> list[ProjectView]:
    with connect(settings) as hub:
        return [_project_view(item) for item in hub.get("/projects")]


def show_project(settings: Settings, name: str) -> ProjectView:
    with connect(settings) as hub:
        return _project_view(hub.get(f"/projects/{segment(name)}"))


def create_project(settings: Settings, request: ProjectCreate) -> ProjectView:
    with connect(settings) as hub:
        return _project_view(hub.post("/projects", request.model_dump(mode="json")))


def delete_project(settings: Settings, name: str) -> ProjectView:
    with connect(settings) as hub:
        return _project_view(hub.delete(f"/projects/{segment(name)}"))


# ---- operations ------------------------------------------------------------------------------------
def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def operation_record(data: dict[str, Any]) -> OperationRecord:
    """An operation as the hub answers it (the journal record's fields and steps)."""
    from autovibe.operations.models import OperationRecord, OpStatus, StepRecord, StepStatus

    steps = tuple(
        StepRecord(
            index=int(step["index"]),
            name=str(step["name"]),
            status=StepStatus(step["status"]),
            error=step.get("error"),
            started_at=_time(step.get("started_at")),
            finished_at=_time(step.get("finished_at")),
        )
        for step in data.get("steps") or ()
    )
    created = _time(data.get("created_at"))
    assert created is not None, "an operation without created_at"
    return OperationRecord(
        id=str(data["id"]),
        kind=str(data["kind"]),
        status=OpStatus(data["status"]),
        params=dict(data.get("params") or {}),
        state=dict(data.get("state") or {}),
        error=data.get("error"),
        owner=str(data.get("owner") or ""),
        actor=str(data.get("actor") or ""),
        created_at=created,
        updated_at=_time(data.get("updated_at")) or created,
        steps=steps,
    )


def list_operations(settings: Settings, *, unfinished: bool, limit: int) -> list[OperationRecord]:
    with connect(settings) as hub:
        items = hub.get("/operations", unfinished=str(unfinished).lower(), limit=limit)
    return [operation_record(item) for item in items]


def show_operation(settings: Settings, op_id: str) -> OperationRecord:
    with connect(settings) as hub:
        return operation_record(hub.get(f"/operations/{segment(op_id)}"))


def resume_operations(settings: Settings) -> list[tuple[str, OperationRecord]]:
    """``ops resume`` as a hub job: each resumed operation (read back whole) with the status it had."""
    with connect(settings) as hub:
        job = hub.submit_and_follow("POST", "/operations/resume")
        rows = (job.get("result") or {}).get("resumed") or []
        resumed: list[tuple[str, OperationRecord]] = []
        for row in rows:
            after = operation_record(hub.get(f"/operations/{segment(str(row['id']))}"))
            if not row.get("finished", True) and row.get("error"):
                after = replace(after, error=str(row["error"]))  # why it was not resumed
            resumed.append((str(row.get("was") or ""), after))
    return resumed
