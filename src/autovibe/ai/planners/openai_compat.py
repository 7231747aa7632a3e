"""A planner for OpenAI-compatible chat servers (Ollama, vLLM, llama.cpp, ...) via the ``openai`` SDK.

The model is asked to call one function, ``propose_plan``, whose parameters are the plan schema. Local
servers differ in how well they honour tools, so when the reply carries no tool call the planner falls
back to JSON: the reply's text if it is a JSON object, else a second request with
``response_format={"type": "json_object"}`` and the schema in the prompt. Whatever comes back is
validated with :func:`parse_plan`; anything that is not a plan is a :class:`PlannerError`.

Redaction is off by default (the model usually runs on the operator's own hardware).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolParam,
)

from autovibe.ai.plan import Plan, parse_plan
from autovibe.ai.planners.base import PlannerError, PlannerResult, PlanningContext
from autovibe.ai.planners.redact import TOOL_DESCRIPTION, TOOL_NAME, Redactor, system_prompt

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0

Sleep = Callable[[float], Awaitable[None]]


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


class OpenAICompatPlanner:
    name = "openai_compat"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str = "none",
        redact: bool = False,
        max_retries: int = 3,
        timeout_s: float = 120,
        max_tokens: int | None = None,
        json_fallback: bool = True,
        backoff_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        hosts: Iterable[str] = (),
    ) -> None:
        self.model = model
        self._max_retries = max_retries
        self._redact = redact
        self._max_tokens = max_tokens
        self._json_fallback = json_fallback
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._hosts = tuple(hosts)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> OpenAICompatPlanner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def plan(self, request: str, context: PlanningContext) -> PlannerResult:
        redactor = Redactor.for_request(request, context, hosts=self._hosts) if self._redact else None
        if redactor is not None:
            request, context = redactor.redact(request), redactor.redact_context(context)
        system = system_prompt(context)
        usage = [0, 0]
        completion = await self._complete(
            [{"role": "system", "content": system}, {"role": "user", "content": request}], tools=True
        )
        self._count(completion, usage)
        data = self._tool_arguments(completion)
        if data is None:
            data = self._json_content(completion)
        if data is None and self._json_fallback:
            schema = json.dumps(Plan.model_json_schema(), separators=(",", ":"))
            json_system = (
                f"{system}\n\nReply with one JSON object (no prose, no code fences) that matches this "
                f"JSON schema:\n{schema}"
            )
            completion = await self._complete(
                [{"role": "system", "content": json_system}, {"role": "user", "content": request}],
                tools=False,
            )
            self._count(completion, usage)
            data = self._json_content(completion)
        if data is None:
            raise PlannerError(
                f"openai_compat: the model did not call {TOOL_NAME} nor reply with a JSON plan; "
                "no plan was produced"
            )
        try:
            plan = parse_plan(data)
            if redactor is not None:
                plan = redactor.restore_plan(plan)
        except ValueError as exc:
            raise PlannerError(f"openai_compat: {exc}") from None
        return PlannerResult(
            plan=plan,
            planner=self.name,
            model=completion.model or self.model,
            input_tokens=usage[0],
            output_tokens=usage[1],
        )

    @staticmethod
    def _count(completion: ChatCompletion, usage: list[int]) -> None:
        if completion.usage is not None:
            usage[0] += completion.usage.prompt_tokens
            usage[1] += completion.usage.completion_tokens

    @staticmethod
    def _tool_arguments(completion: ChatCompletion) -> Any:
        """The parsed arguments of the propose_plan call, None when there is no such call."""
        if not completion.choices:
            return None
        for call in completion.choices[0].message.tool_calls or ():
            function = getattr(call, "function", None)
            if function is None or function.name != TOOL_NAME:
                continue
            try:
                return json.loads(function.arguments or "")
            except json.JSONDecodeError as exc:
                raise PlannerError(
                    f"openai_compat: the {TOOL_NAME} arguments are not valid JSON ({exc.msg})"
                ) from None
        return None

    @staticmethod
    def _json_content(completion: ChatCompletion) -> Any:
        """The reply's text as a JSON object, None when it is not one."""
        if not completion.choices:
            return None
        content = completion.choices[0].message.content
        if not content:
            return None
        try:
            data = json.loads(_strip_fences(content))
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    async def _complete(self, messages: list[ChatCompletionMessageParam], *, tools: bool) -> ChatCompletion:
        tool: ChatCompletionToolParam = {
            "type": "function",
            "function": {
                "name": TOOL_NAME,
                "description": TOOL_DESCRIPTION,
                "parameters": Plan.model_json_schema(),
            },
        }
        choice: ChatCompletionToolChoiceOptionParam = {"type": "function", "function": {"name": TOOL_NAME}}
        max_tokens = openai.omit if self._max_tokens is None else self._max_tokens
        attempt = 0
        while True:
            try:
                if tools:
                    return await self._client.chat.completions.create(
                        model=self.model,
                        messages=messages,
                        tools=[tool],
                        tool_choice=choice,
                        max_tokens=max_tokens,
                    )
                return await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    response_format={"type": "json_object"},
                    max_tokens=max_tokens,
                )
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES or attempt >= self._max_retries:
                    raise PlannerError(
                        f"openai_compat: the server answered {exc.status_code}: {exc.message}"
                    ) from None
                delay = _retry_after(exc)
            except openai.APIConnectionError as exc:
                if attempt >= self._max_retries:
                    raise PlannerError(f"openai_compat: cannot reach the server: {exc}") from None
                delay = None
            if delay is None:
                delay = self._backoff_s * 2**attempt
            attempt += 1
            await self._sleep(min(delay, MAX_BACKOFF_S))


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
