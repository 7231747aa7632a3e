"""A planner backed by Anthropic's Messages API, its output constrained to the plan schema by tool use.

The model gets exactly one tool, ``propose_plan``, whose input schema is ``Plan.model_json_schema()``,
and ``tool_choice`` forces it. The tool call's input is validated with :func:`parse_plan`; anything else
(no tool call, an input that is not a plan) is a :class:`PlannerError` and nothing runs.

Names and addresses are redacted before the request leaves (on by default: this is a hosted model).
Retries (429 rate limited, 529 overloaded, 5xx, connection errors) are ours, with exponential backoff and
an injectable ``sleep``; the SDK's own retries are off so the count and the waits are predictable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anthropic
from anthropic.types import Message, ToolParam, ToolUseBlock

from autovibe.ai.plan import Plan, parse_plan
from autovibe.ai.planners.base import PlannerError, PlannerResult, PlanningContext
from autovibe.ai.planners.redact import TOOL_DESCRIPTION, TOOL_NAME, Redactor, system_prompt

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
MAX_BACKOFF_S = 30.0

# claude-sonnet-4-5 is deprecated by the SDK (end of life November 2026): a DeprecationWarning each call.
DEFAULT_MODEL = "claude-sonnet-4-6"

Sleep = Callable[[float], Awaitable[None]]


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class AnthropicPlanner:
    name = "anthropic"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_retries: int = 3,
        redact: bool = True,
        timeout_s: float = 60,
        max_tokens: int = 4096,
        backoff_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        hosts: Iterable[str] = (),
    ) -> None:
        self.model = model
        self._max_retries = max_retries
        self._redact = redact
        self._max_tokens = max_tokens
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._hosts = tuple(hosts)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AnthropicPlanner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def plan(self, request: str, context: PlanningContext) -> PlannerResult:
        redactor = Redactor.for_request(request, context, hosts=self._hosts) if self._redact else None
        if redactor is not None:
            request, context = redactor.redact(request), redactor.redact_context(context)
        message = await self._create(system_prompt(context), request)
        plan = self._plan_from(message)
        if redactor is not None:
            try:
                plan = redactor.restore_plan(plan)
            except ValueError as exc:
                raise PlannerError(f"anthropic: {exc}") from None
        return PlannerResult(
            plan=plan,
            planner=self.name,
            model=message.model or self.model,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
        )

    @staticmethod
    def _plan_from(message: Message) -> Plan:
        calls = [b for b in message.content if isinstance(b, ToolUseBlock) and b.name == TOOL_NAME]
        if not calls:
            raise PlannerError(
                f"anthropic: the model did not call {TOOL_NAME} (stop_reason={message.stop_reason}); "
                "no plan was produced"
            )
        try:
            return parse_plan(calls[0].input)
        except ValueError as exc:
            raise PlannerError(f"anthropic: {exc}") from None

    async def _create(self, system: str, request: str) -> Message:
        tool: ToolParam = {
            "name": TOOL_NAME,
            "description": TOOL_DESCRIPTION,
            "input_schema": Plan.model_json_schema(),
        }
        attempt = 0
        while True:
            delay: float | None
            try:
                return await self._client.messages.create(
                    model=self.model,
                    max_tokens=self._max_tokens,
                    system=system,
                    messages=[{"role": "user", "content": request}],
                    tools=[tool],
                    tool_choice={"type": "tool", "name": TOOL_NAME},
                )
            except anthropic.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES or attempt >= self._max_retries:
                    raise PlannerError(
                        f"anthropic: the API answered {exc.status_code}: {_error_text(exc)}"
                    ) from None
                delay = _retry_after(exc)
            except anthropic.APIConnectionError as exc:
                if attempt >= self._max_retries:
                    raise PlannerError(f"anthropic: cannot reach the API: {exc}") from None
                delay = None
            if delay is None:
                delay = self._backoff_s * 2**attempt
            attempt += 1
            await self._sleep(min(delay, MAX_BACKOFF_S))


def _error_text(exc: anthropic.APIStatusError) -> str:
    body: Any = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message
