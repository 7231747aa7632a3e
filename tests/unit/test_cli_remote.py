"""The CLI's hub client against a scripted HTTP transport: error kinds and exit codes, waiting out 429s,
following a job's Server-Sent Events across a dropped stream, and never leaking the token."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from autovibe.cli.errors import exit_code_for
from autovibe.cli.remote import NO_TOKEN, TOKEN_HINT, HubClient, error_for, refuse_unsupported
from autovibe.errors import (
    AutovibeDenied,
    AutovibeError,
    AutovibeInvalid,
    AutovibeNotFound,
    AutovibeUnavailable,
)
from autovibe.security.gate import ApprovalRequired
from autovibe.settings import Settings

URL = "http://127.0.0.1:8080"
SECRET = "avt_abc123_supersecretvalue"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AUTOVIBE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _client(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None
) -> HubClient:
    settings = Settings(hub_url=URL, token=SECRET)
    waits = sleeps if sleeps is not None else []
    return HubClient(settings, transport=httpx.MockTransport(handler), sleep=waits.append)


def _error(status: int, kind: str, message: str, hint: str | None = None, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": kind, "message": message, "hint": hint, **extra})


def test_no_token_is_a_usage_error() -> None:
    with pytest.raises(AutovibeInvalid) as caught:
        HubClient(Settings(hub_url=URL))
    assert caught.value.message == NO_TOKEN and exit_code_for(caught.value) == 2


def test_requests_carry_the_token_under_api_v1() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    with _client(handler) as hub:
        assert hub.get("/machines", project="alpha", absent=None) == []
    assert seen[0].url == httpx.URL(f"{URL}/api/v1/machines?project=alpha")
    assert seen[0].headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        (_error(400, "invalid", "name: too long"), AutovibeInvalid, 2),
        (_error(403, "denied", "role viewer may not machine.create"), AutovibeDenied, 3),
        (
            _error(404, "not_found", "no machine 'x'", "list machines with `autovibe machine list`"),
            AutovibeNotFound,
            4,
        ),
        (_error(409, "conflict", "locked"), AutovibeError, 1),
        (_error(502, "upstream", "PVE said no"), AutovibeError, 1),
        (_error(503, "unavailable", "PVE is away"), AutovibeUnavailable, 1),
        (httpx.Response(502, text="<html>bad gateway</html>"), AutovibeUnavailable, 1),
    ],
)
def test_error_bodies_become_the_local_kinds(
    response: httpx.Response, kind: type[Exception], code: int
) -> None:
    with _client(lambda _request: response) as hub, pytest.raises(kind) as caught:
        hub.get("/machines/x")
    assert exit_code_for(caught.value) == code
    body = (
        json.loads(response.content) if response.headers.get("content-type") == "application/json" else None
    )
    if body is not None:
        assert caught.value.args[0] == body["message"] and getattr(caught.value, "hint", None) == body["hint"]


def test_unauthorized_is_denied_with_a_token_hint_and_no_secret() -> None:
    response = _error(401, "unauthorized", "authentication failed: the API token is not valid")
    with _client(lambda _request: response) as hub, pytest.raises(AutovibeDenied) as caught:
        hub.get("/machines")
    assert exit_code_for(caught.value) == 3 and caught.value.hint == TOKEN_HINT
    assert SECRET not in str(caught.value) + str(caught.value.hint)


def test_rate_limits_are_waited_out_then_given_up() -> None:
    answers = [
        _error(429, "rate_limited", "too many", headers={}),
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "rate_limited", "message": "slow"}),
        httpx.Response(200, json={"ok": True}),
    ]
    sleeps: list[float] = []
    with _client(lambda _request: answers.pop(0), sleeps) as hub:
        assert hub.get("/x") == {"ok": True}
    assert sleeps == [1.0, 2.0]

    always = httpx.Response(
        429, headers={"Retry-After": "999"}, json={"error": "rate_limited", "message": "no"}
    )
    sleeps.clear()
    with _client(lambda _request: always, sleeps) as hub, pytest.raises(AutovibeUnavailable):
        hub.get("/x")
    assert sleeps == [30.0] * 5  # bounded: at most 5 waits of at most 30 s


def _sse(*events: tuple[int | None, str, dict[str, Any]]) -> str:
    text = "retry: 2000\n\n: keepalive\n\n"
    for seq, kind, data in events:
        text += (f"id: {seq}\n" if seq is not None else "") + f"event: {kind}\ndata: {json.dumps(data)}\n\n"
    return text


class _JobHub:
    """POST answers 202; the first event stream drops after one event, the resumed one finishes."""

    def __init__(self, end: dict[str, Any]) -> None:
        self.end = end
        self.resumed_after: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            links = {"job": "/api/v1/jobs/j1", "events": "/api/v1/jobs/j1/events"}
            return httpx.Response(
                202, json={"id": "j1", "kind": "machine.create", "status": "queued", "links": links}
            )
        assert request.url.path == "/api/v1/jobs/j1/events"
        self.resumed_after.append(request.headers.get("Last-Event-ID"))
        step = {"type": "step", "machine": "web-1", "step": "clone", "index": 1, "total": 3}
        if len(self.resumed_after) == 1:
            return httpx.Response(200, text=_sse((1, "step", step)))
        done = {**step, "step": "done", "index": 3}
        return httpx.Response(200, text=_sse((2, "step", done), (None, "end", self.end)))


def test_a_job_is_followed_across_a_dropped_stream() -> None:
    finished = {"id": "j1", "status": "succeeded", "result": {"ok": True}, "error": None}
    server = _JobHub(finished)
    events: list[tuple[str, str]] = []
    accepted: list[str] = []
    with _client(server) as hub:
        job = hub.submit_and_follow(
            "POST",
            "/machines",
            json_body={},
            progress=lambda kind, data: events.append((kind, data["step"])),
            on_accepted=accepted.append,
        )
    assert job == finished and accepted == ["j1"]
    assert events == [("step", "clone"), ("step", "done")]  # each once, in order
    assert server.resumed_after == [None, "1"]


def test_a_failed_job_raises_its_kind_unless_it_kept_a_partial_result() -> None:
    error = {
        "kind": "approval_required",
        "message": "machine.delete on machine web needs an approval",
        "hint": "another identity runs `autovibe approve 1234abcd`",
        "details": {"approval_id": "1234abcd-0000"},
    }
    failed = {"status": "failed", "result": None, "error": error}
    with _client(_JobHub(failed)) as hub, pytest.raises(ApprovalRequired) as caught:
        hub.submit_and_follow("POST", "/machines")
    assert exit_code_for(caught.value) == 3 and caught.value.approval_id == "1234abcd-0000"
    assert caught.value.hint == error["hint"]

    partial = {
        "status": "failed",
        "result": {"outcomes": []},
        "error": {"kind": "failed", "message": "1 failed"},
    }
    with _client(_JobHub(partial)) as hub:
        assert hub.submit_and_follow("POST", "/machines", keep_partial=True) == partial
        with pytest.raises(AutovibeError, match="1 failed"):
            hub.submit_and_follow("POST", "/machines")


def test_an_unreachable_hub_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(refuse) as hub, pytest.raises(AutovibeUnavailable, match=f"cannot reach the hub at {URL}"):
        hub.get("/projects")


def test_commands_without_a_remote_half_refuse_hub() -> None:
    refuse_unsupported(["machine", "list"])
    with pytest.raises(
        AutovibeInvalid, match="`autovibe cluster status` does not work with --hub yet"
    ) as caught:
        refuse_unsupported(["cluster", "status"])  # it reads PVE directly: run it on the hub host
    assert exit_code_for(caught.value) == 2


def test_a_job_that_failed_inside_an_operation_names_it_as_a_local_run_does() -> None:
    from autovibe.operations.errors import OperationFailed

    failed = error_for("failed", "clone failed", "see the task log", {"operation_id": "0123abcd-ef"})
    assert isinstance(failed, OperationFailed) and failed.operation_id == "0123abcd-ef"
    assert (failed.message, failed.hint, exit_code_for(failed)) == ("clone failed", "see the task log", 1)
    # Without an operation, or for another kind, the kind's own error.
    assert not isinstance(error_for("failed", "no VM", None, {}), OperationFailed)
    assert not isinstance(error_for("not_found", "gone", None, {"operation_id": "x"}), OperationFailed)
