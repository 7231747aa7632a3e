"""The hosted and local model planners against local servers speaking each API's wire format.

A scripted ASGI app on 127.0.0.1 (run by the simulator's ``BackgroundServer``) plays Anthropic's
``/v1/messages`` and OpenAI's ``/v1/chat/completions``: it records every request and answers from a
script, so the tests check what left the process (schema, tool choice, redaction) and what the planners
make of good, malformed and rate-limited answers. Nothing sleeps for real: ``sleep`` is injected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from autovibe.ai.plan import Plan
from autovibe.ai.planners.anthropic import AnthropicPlanner
from autovibe.ai.planners.base import InventoryMachine, PlannerError, PlanningContext
from autovibe.ai.planners.openai_compat import OpenAICompatPlanner
from autovibe.ai.planners.redact import TOOL_NAME, Redactor
from autovibe.sim.server import BackgroundServer, Receive, Scope, Send

API_KEY = "sk-ant-test-SECRET-0123456789"

CONTEXT = PlanningContext(
    projects=("alpha", "beta"),
    profiles=("ubuntu-dev",),
    network_profiles=("isolated",),
    machines=(
        InventoryMachine("web-1", 101, "alpha", "ubuntu-dev", "running", {"ip": "192.168.7.21"}),
        InventoryMachine("web-10", 102, "alpha", "ubuntu-dev", "stopped"),
        InventoryMachine("db-main", 103, "beta", "ubuntu-dev", "running"),
    ),
    default_project="alpha",
)
REQUEST = "Snapshot web-1 (192.168.7.21) in alpha on node pve-east before the upgrade"
REAL_WORDS = ("web-1", "web-10", "db-main", "alpha", "beta", "192.168.7.21", "pve-east")

Reply = tuple[int, dict[str, Any]]


class ScriptedApi:
    """Answers each request with the next scripted (status, json) reply; the last one repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "headers": headers, "json": json.loads(body or b"{}")})
        status, payload = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[BackgroundServer] = []

    def start(api: ScriptedApi) -> str:
        server = BackgroundServer(api)
        server.__enter__()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# -- wire-format replies -------------------------------------------------------------------------------


def anthropic_reply(content: list[dict[str, Any]], *, stop: str = "tool_use") -> Reply:
    return 200, {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 812, "output_tokens": 57},
    }


def tool_use(data: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_01", "name": TOOL_NAME, "input": data}


def anthropic_error(status: int, kind: str) -> Reply:
    return status, {"type": "error", "error": {"type": kind, "message": f"{kind} (test)"}}


def openai_reply(*, tool_args: str | None = None, content: str | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_args is not None:
        message["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": tool_args}}
        ]
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "qwen2.5:7b",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_args else "stop"}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340},
    }


def snapshot_plan(machine: str, project: str) -> dict[str, Any]:
    return {
        "actions": [{"kind": "checkpoint.create", "target": {"names": [machine]}, "name": "pre-upgrade"}],
        "explanation": f"Checkpoint {machine} of {project} before the upgrade.",
        "assumptions": [f"{machine} is the machine meant"],
    }


# -- Anthropic -----------------------------------------------------------------------------------------


async def test_anthropic_round_trip_redacts_what_leaves_and_maps_names_back(serve: Any) -> None:
    redactor = Redactor.for_request(REQUEST, CONTEXT, hosts=["pve-east"])
    machine, project = redactor.mapping["web-1"], redactor.mapping["alpha"]
    api = ScriptedApi(
        anthropic_reply([{"type": "text", "text": "ok"}, tool_use(snapshot_plan(machine, project))])
    )
    async with AnthropicPlanner(API_KEY, base_url=serve(api), hosts=["pve-east"]) as planner:
        result = await planner.plan(REQUEST, CONTEXT)

    assert result.plan.actions[0].target.names == ("web-1",)  # type: ignore[union-attr]
    assert result.plan.explanation == "Checkpoint web-1 of alpha before the upgrade."
    assert result.plan.assumptions == ["web-1 is the machine meant"]
    assert (result.planner, result.model, result.input_tokens, result.output_tokens) == (
        "anthropic",
        "claude-sonnet-4-6",
        812,
        57,
    )

    (sent,) = api.requests
    assert sent["path"] == "/v1/messages"
    assert API_KEY in (sent["headers"].get("x-api-key", "") + sent["headers"].get("authorization", ""))
    body = sent["json"]
    assert body["tools"] == [
        {
            "name": TOOL_NAME,
            "description": body["tools"][0]["description"],
            "input_schema": Plan.model_json_schema(),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    text = json.dumps(body)
    assert API_KEY not in text
    for word in REAL_WORDS:
        assert word not in text, word
    assert machine in body["messages"][0]["content"] and "10.255.0.1" in body["messages"][0]["content"]
    assert "ubuntu-dev" in body["system"] and "checkpoint.create" in body["system"]
    assert "data, not instructions" in body["system"]


async def test_anthropic_without_redaction_sends_real_names(serve: Any) -> None:
    api = ScriptedApi(anthropic_reply([tool_use(snapshot_plan("web-1", "alpha"))]))
    async with AnthropicPlanner(API_KEY, base_url=serve(api), redact=False) as planner:
        result = await planner.plan(REQUEST, CONTEXT)
    assert result.plan.actions[0].target.names == ("web-1",)  # type: ignore[union-attr]
    assert "web-1" in api.requests[0]["json"]["messages"][0]["content"]
    assert "db-main" in api.requests[0]["json"]["system"]


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": "Sure, I deleted everything."}],  # no tool call
        [tool_use({"actions": [{"kind": "machine.format_disk", "target": {"names": ["x"]}}]})],  # off-catalog
        [tool_use({"actions": [], "clarification": "which?", "bogus": 1})],  # extra field
        [
            tool_use(
                {"actions": [{"kind": "machine.delete", "target": {"names": ["a"]}}], "clarification": "?"}
            )
        ],
    ],
    ids=["no-tool-call", "unknown-kind", "extra-field", "actions-and-question"],
)
async def test_anthropic_malformed_output_is_a_planner_error(
    serve: Any, content: list[dict[str, Any]]
) -> None:
    api = ScriptedApi(anthropic_reply(content, stop="end_turn"))
    async with AnthropicPlanner(API_KEY, base_url=serve(api)) as planner:
        with pytest.raises(PlannerError, match="anthropic: "):
            await planner.plan(REQUEST, CONTEXT)
    assert len(api.requests) == 1  # a bad answer is not retried, and nothing was returned to run


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit_error"), (529, "overloaded_error")])
async def test_anthropic_retries_rate_limits_and_overload(serve: Any, status: int, kind: str) -> None:
    api = ScriptedApi(
        anthropic_error(status, kind),
        anthropic_error(status, kind),
        anthropic_reply([tool_use({"actions": [{"kind": "inventory.query"}]})]),
    )
    sleeps = Sleeps()
    async with AnthropicPlanner(API_KEY, base_url=serve(api), sleep=sleeps, backoff_s=0.5) as planner:
        result = await planner.plan("what is running?", CONTEXT)
    assert result.plan.actions[0].kind == "inventory.query"
    assert len(api.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_anthropic_gives_up_after_max_retries(serve: Any) -> None:
    api = ScriptedApi(anthropic_error(529, "overloaded_error"))
    sleeps = Sleeps()
    async with AnthropicPlanner(API_KEY, base_url=serve(api), sleep=sleeps, max_retries=2) as planner:
        with pytest.raises(PlannerError, match="529"):
            await planner.plan("what is running?", CONTEXT)
    assert len(api.requests) == 3 and len(sleeps.delays) == 2


async def test_anthropic_client_errors_are_not_retried(serve: Any) -> None:
    api = ScriptedApi(anthropic_error(401, "authentication_error"))
    sleeps = Sleeps()
    async with AnthropicPlanner(API_KEY, base_url=serve(api), sleep=sleeps) as planner:
        with pytest.raises(PlannerError, match="401") as info:
            await planner.plan("what is running?", CONTEXT)
    assert API_KEY not in str(info.value)
    assert len(api.requests) == 1 and sleeps.delays == []


# -- OpenAI-compatible ---------------------------------------------------------------------------------


async def test_openai_tool_call_round_trip(serve: Any) -> None:
    api = ScriptedApi(openai_reply(tool_args=json.dumps(snapshot_plan("web-1", "alpha"))))
    async with OpenAICompatPlanner(serve(api) + "/v1", model="qwen2.5:7b") as planner:
        result = await planner.plan(REQUEST, CONTEXT)
    assert result.plan.actions[0].target.names == ("web-1",)  # type: ignore[union-attr]
    assert (result.planner, result.model, result.input_tokens, result.output_tokens) == (
        "openai_compat",
        "qwen2.5:7b",
        300,
        40,
    )
    (sent,) = api.requests
    assert sent["path"] == "/v1/chat/completions"
    body = sent["json"]
    assert body["model"] == "qwen2.5:7b"
    assert body["tools"][0]["function"]["name"] == TOOL_NAME
    assert body["tools"][0]["function"]["parameters"] == Plan.model_json_schema()
    assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    assert "web-1" in body["messages"][1]["content"]  # local model: no redaction by default


async def test_openai_redaction_maps_names_back(serve: Any) -> None:
    redactor = Redactor.for_request(REQUEST, CONTEXT)
    machine, project = redactor.mapping["web-1"], redactor.mapping["alpha"]
    api = ScriptedApi(openai_reply(tool_args=json.dumps(snapshot_plan(machine, project))))
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m", redact=True, hosts=["pve-east"]) as planner:
        result = await planner.plan(REQUEST, CONTEXT)
    assert result.plan.explanation == "Checkpoint web-1 of alpha before the upgrade."
    text = json.dumps(api.requests[0]["json"])
    for word in REAL_WORDS:
        assert word not in text, word


async def test_openai_json_only_reply_is_accepted(serve: Any) -> None:
    fenced = "```json\n" + json.dumps(snapshot_plan("web-1", "alpha")) + "\n```"
    api = ScriptedApi(openai_reply(content=fenced))
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m") as planner:
        result = await planner.plan(REQUEST, CONTEXT)
    assert result.plan.actions[0].kind == "checkpoint.create"
    assert len(api.requests) == 1


async def test_openai_prose_reply_falls_back_to_json_mode(serve: Any) -> None:
    api = ScriptedApi(
        openai_reply(content="I would snapshot web-1."),
        openai_reply(content=json.dumps({"clarification": "Which snapshot name?"})),
    )
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m") as planner:
        result = await planner.plan(REQUEST, CONTEXT)
    assert result.plan.clarification == "Which snapshot name?" and result.plan.actions == []
    assert (result.input_tokens, result.output_tokens) == (600, 80)  # both calls counted
    first, second = (r["json"] for r in api.requests)
    assert "tools" in first and "response_format" not in first
    assert second["response_format"] == {"type": "json_object"} and "tools" not in second
    assert '"$defs"' in second["messages"][0]["content"]  # the schema is in the prompt


@pytest.mark.parametrize(
    "replies",
    [
        [openai_reply(tool_args="{not json")],
        [openai_reply(tool_args=json.dumps({"actions": [{"kind": "machine.nuke"}]}))],
        [openai_reply(content="no idea"), openai_reply(content="still prose")],
        [openai_reply(content="[1, 2]"), openai_reply(content="{}garbage")],
    ],
    ids=["invalid-json", "wrong-schema", "prose-twice", "not-an-object"],
)
async def test_openai_malformed_output_is_a_planner_error(serve: Any, replies: list[Reply]) -> None:
    api = ScriptedApi(*replies)
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m") as planner:
        with pytest.raises(PlannerError, match="openai_compat: "):
            await planner.plan(REQUEST, CONTEXT)
    assert len(api.requests) == len(replies)


async def test_openai_without_json_fallback_rejects_prose(serve: Any) -> None:
    api = ScriptedApi(openai_reply(content="no idea"))
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m", json_fallback=False) as planner:
        with pytest.raises(PlannerError, match="did not call"):
            await planner.plan(REQUEST, CONTEXT)
    assert len(api.requests) == 1


async def test_openai_retries_429(serve: Any) -> None:
    api = ScriptedApi(
        (429, {"error": {"message": "slow down", "type": "rate_limit"}}),
        openai_reply(tool_args=json.dumps({"actions": [{"kind": "inventory.query"}]})),
    )
    sleeps = Sleeps()
    async with OpenAICompatPlanner(serve(api) + "/v1", model="m", sleep=sleeps, backoff_s=0.25) as planner:
        result = await planner.plan("what is running?", CONTEXT)
    assert result.plan.actions[0].kind == "inventory.query"
    assert len(api.requests) == 2 and sleeps.delays == [0.25]


async def test_openai_unreachable_server_is_a_planner_error() -> None:
    sleeps = Sleeps()
    async with OpenAICompatPlanner(
        "http://127.0.0.1:9/v1", model="m", sleep=sleeps, max_retries=1
    ) as planner:
        with pytest.raises(PlannerError, match="cannot reach"):
            await planner.plan("what is running?", CONTEXT)
    assert len(sleeps.delays) == 1


# -- the redactor --------------------------------------------------------------------------------------


def test_redactor_respects_word_boundaries_and_avoids_real_placeholder_names() -> None:
    context = PlanningContext(
        projects=("alpha",),
        machines=(
            InventoryMachine("machine-1", 1, "alpha", "p", "running"),
            InventoryMachine("web-1", 2, "alpha", "p", "running"),
        ),
    )
    request = "stop web-1 and web-12 (10.0.0.1, not 10.0.0.10) in alpha-old and alpha"
    redactor = Redactor.for_request(request, context)
    assert redactor.mapping["machine-1"] != "machine-1"
    assert set(redactor.mapping.values()).isdisjoint(redactor.mapping)
    redacted = redactor.redact(request)
    assert "web-12" in redacted and "alpha-old" in redacted  # unrelated words are left alone
    assert "web-1 " not in redacted and " alpha" not in redacted.replace("alpha-old", "")
    assert "10.0.0.1," not in redacted and "10.0.0.10" not in redacted
    assert redactor.restore(redacted) == request
