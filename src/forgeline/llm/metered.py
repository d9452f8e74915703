"""Every model call a stage makes goes through ``MeteredModel``, one per stage run.

Around the configured model (a single model or a fallback chain) it:

1. answers from the **response cache** when the same model got the same messages, tools
   and settings before (``llm.cached`` events in a ``llmcache-<key>`` stream, so the cache
   lives in the event store next to the work and needs no table of its own);
2. checks the task's **budget** before the call: when the tokens and money spent so far
   plus this call's estimate would cross it, it raises ``BudgetExceeded`` and the stage
   pauses the task (``task.awaiting_approval``) without calling the model;
3. records an ``llm.usage`` event per call: tokens in/out/cached, latency, cost from the
   price table (local and scripted models cost nothing);
4. stops the stage on a **loop**: the same tool call (or the same rejected answer) made
   ``loop_limit`` times in one stage run raises ``LoopDetected``.

``Compactor`` is the other half: a pydantic-ai history processor that keeps a role's
conversation under its token budget by summarising older turns and trimming long tool
output, remembering what it dropped for a ``context.compacted`` event.

Token counts before a call are estimates (about four characters a token); the recorded
usage is what the provider reports. Parallel stages of one task read the spent total once
each, so two calls racing at the very edge of a budget can overshoot it by one call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry import trace
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from forgeline.config import PriceConfig
from forgeline.core.events import (
    Budget,
    ContextCompacted,
    Event,
    LlmCached,
    LlmUsage,
    NewEvent,
    usage_stream,
    utcnow,
)
from forgeline.errors import ForgelineError, StoreError
from forgeline.observability.tracing import model_span, record_usage
from forgeline.store.base import EventStore

CHARS_PER_TOKEN = 4


class BudgetExceeded(ForgelineError):
    """A model call would cross the task's budget; the stage pauses the task."""

    def __init__(self, reason: str, spent_tokens: int, spent_usd: float) -> None:
        super().__init__(reason)
        self.spent_tokens = spent_tokens
        self.spent_usd = spent_usd


class LoopDetected(ForgelineError):
    """A model repeats itself; the stage stops with the reason instead of spinning."""


# ----------------------------------------------------------------------- prices


PriceTable = Mapping[str, PriceConfig]
FREE_PREFIXES = ("local:", "function:", "test", "scripted", "ollama:")


def call_cost(
    prices: PriceTable, model: str, input_tokens: int, output_tokens: int, cached: int = 0
) -> float | None:
    """The price of a call from the configured table, 0 for local models, else None."""
    price = prices.get(model) or prices.get(model.split(":", 1)[-1])
    if price is None:
        return 0.0 if model.startswith(FREE_PREFIXES) else None
    cached_rate = price.input if price.cached_input is None else price.cached_input
    fresh = max(input_tokens - cached, 0)
    return (fresh * price.input + cached * cached_rate + output_tokens * price.output) / 1e6


def response_cost(prices: PriceTable, spec: str, response: ModelResponse) -> float:
    usage = response.usage
    names = [n for n in (spec, response.model_name) if n]
    for name in names:
        cost = call_cost(
            prices, name, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens
        )
        if cost is not None:
            return cost
    try:  # genai-prices knows the public providers' list prices
        return float(response.cost().total_price)
    except Exception:  # unknown model or no usage reported: count tokens only
        return 0.0


# ------------------------------------------------------------------------ cache


def cache_key(
    model: str,
    messages: list[ModelMessage],
    settings: ModelSettings | None,
    parameters: ModelRequestParameters,
) -> str:
    """A digest of what determines an answer: the model, the conversation's content (not
    its timestamps or run ids), the tools and output schema, and the settings."""
    tools = [
        (t.name, t.parameters_json_schema)
        for t in (*parameters.function_tools, *parameters.output_tools)
    ]
    body = {
        "model": model,
        "messages": [_canonical(m) for m in messages],
        "tools": tools,
        "output_mode": parameters.output_mode,
        "allow_text_output": parameters.allow_text_output,
        "settings": dict(settings or {}),
    }
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(message: ModelMessage) -> list[Any]:
    parts: list[Any] = []
    if isinstance(message, ModelRequest):
        parts.append(["instructions", message.instructions])
    for part in message.parts:
        if isinstance(part, ToolCallPart):
            parts.append([part.part_kind, part.tool_name, part.args_as_json_str()])
        else:
            content = getattr(part, "content", None)
            parts.append([part.part_kind, getattr(part, "tool_name", None), content])
    return parts


def cache_stream(key: str) -> str:
    return f"llmcache-{key}"


# ------------------------------------------------------------------------ meter


@dataclass
class Meter:
    """What one stage run's model calls share: where to record, the budget, the cache."""

    store: EventStore
    task_id: str
    role: str
    budget: Budget = field(default_factory=Budget)
    prices: PriceTable = field(default_factory=dict)
    cache: bool = True
    loop_limit: int = 3
    clock: Callable[[], datetime] = field(default=utcnow)
    calls: Counter[str] = field(default_factory=Counter)
    spent: tuple[int, float] | None = None

    async def spent_so_far(self) -> tuple[int, float]:
        if self.spent is None:
            tokens, usd = 0, 0.0
            for event in await self.store.read_stream(usage_stream(self.task_id)):
                if isinstance(event.data, LlmUsage) and not event.data.cache_hit:
                    tokens += event.data.input_tokens + event.data.output_tokens
                    usd += event.data.cost_usd
            self.spent = (tokens, usd)
        return self.spent

    async def record(self, usage: LlmUsage) -> None:
        record_usage(trace.get_current_span(), usage)  # the call's span (model_span)
        tokens, usd = await self.spent_so_far()
        if not usage.cache_hit:
            self.spent = (tokens + usage.input_tokens + usage.output_tokens, usd + usage.cost_usd)
        event = NewEvent(
            stream_id=usage_stream(self.task_id),
            data=usage,
            correlation_id=self.task_id,
            actor=self.role,
            created_at=self.clock(),
        )
        await self.store.append(usage_stream(self.task_id), [event])

    def check_loop(self, response: ModelResponse, messages: list[ModelMessage]) -> None:
        # Counted per conversation: candidates sampled for one step agreeing is no loop.
        conversation = getattr(messages[0], "conversation_id", None) if messages else None
        for part in response.parts:
            if not isinstance(part, ToolCallPart):
                continue
            args = part.args_as_json_str()
            key = f"{conversation}\0{part.tool_name}\0{args}"
            self.calls[key] += 1
            count = self.calls[key]
            if count >= self.loop_limit:
                what = "answer" if part.tool_name.startswith("final_result") else "tool call"
                told = _last_rejection(messages)
                raise LoopDetected(
                    f"loop detected: the {self.role} model made the same {what} "
                    f"{count} times ({part.tool_name} {args[:200]}); stopping this stage "
                    "instead of asking again"
                    + (f". It was rejected because: {told}" if told else "")
                )


def _last_rejection(messages: list[ModelMessage]) -> str:
    """Why the model's previous answer was sent back, if it was."""
    if not messages or not isinstance(messages[-1], ModelRequest):
        return ""
    for part in messages[-1].parts:
        retried = isinstance(part, ToolReturnPart) and getattr(part, "outcome", "") == "retried"
        if isinstance(part, RetryPromptPart) or retried:
            return _part_text(part).strip()[:500]
    return ""


class MeteredModel(WrapperModel):
    """``spec``'s model, metered for one stage run (see the module docstring)."""

    def __init__(self, wrapped: Model, spec: str, meter: Meter) -> None:
        super().__init__(wrapped)
        self.spec = spec
        self.meter = meter

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """One call (or cache hit) in a span of the stage's trace; ``Meter.record`` puts
        its usage on the span."""
        with model_span(self.meter.role, self.spec):
            return await self._metered(messages, model_settings, model_request_parameters)

    async def _metered(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        meter = self.meter
        key = cache_key(self.spec, messages, model_settings, model_request_parameters)
        if meter.cache and (hit := await self._cached(key)) is not None:
            await meter.record(
                LlmUsage(
                    role=meter.role,
                    model=self.spec,
                    input_tokens=hit.usage.input_tokens,
                    output_tokens=hit.usage.output_tokens,
                    cache_hit=True,
                )
            )
            meter.check_loop(hit, messages)
            return hit
        await self._check_budget(messages, model_settings)
        started = time.perf_counter()
        response = await super().request(messages, model_settings, model_request_parameters)
        latency_ms = (time.perf_counter() - started) * 1000
        usage = response.usage
        await meter.record(
            LlmUsage(
                role=meter.role,
                model=response.model_name or self.spec,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cache_read_tokens,
                latency_ms=round(latency_ms, 3),
                cost_usd=response_cost(meter.prices, self.spec, response),
            )
        )
        if meter.cache:
            await self._remember(key, response)
        meter.check_loop(response, messages)
        return response

    async def _check_budget(
        self, messages: list[ModelMessage], model_settings: ModelSettings | None
    ) -> None:
        meter = self.meter
        if meter.budget.tokens is None and meter.budget.usd is None:
            return
        tokens, usd = await meter.spent_so_far()
        estimate_in = estimate_tokens(messages)
        estimate_out = int((model_settings or {}).get("max_tokens") or 0)
        cost = call_cost(meter.prices, self.spec, estimate_in, estimate_out) or 0.0
        reason = meter.budget.crossed_by(tokens + estimate_in + estimate_out, usd + cost)
        if reason is not None:
            raise BudgetExceeded(
                f"the {meter.role}'s next call to {self.spec} (about {estimate_in} tokens in) "
                f"would cross the task's budget: {reason}",
                tokens,
                usd,
            )

    async def _cached(self, key: str) -> ModelResponse | None:
        for event in await self.meter.store.read_stream(cache_stream(key)):
            if isinstance(event.data, LlmCached):
                [message] = ModelMessagesTypeAdapter.validate_json(event.data.response)
                if isinstance(message, ModelResponse):
                    return message
        return None

    async def _remember(self, key: str, response: ModelResponse) -> None:
        body = ModelMessagesTypeAdapter.dump_json([response]).decode()
        event = NewEvent(
            stream_id=cache_stream(key),
            data=LlmCached(model=self.spec, response=body),
            correlation_id=self.meter.task_id,
            actor=self.meter.role,
            created_at=self.meter.clock(),
        )
        with contextlib.suppress(StoreError):  # a concurrent run cached the same answer
            await self.meter.store.append(cache_stream(key), [event], expected_version=0)


# ------------------------------------------------------------------------ usage


@dataclass
class UsageRow:
    """Calls of one model by one role of one task (``task_id``/``role``/``model`` may be
    ``*`` in totals)."""

    task_id: str
    role: str
    model: str
    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0


def usage_rows(task_id: str, events: list[Event]) -> list[UsageRow]:
    """One row per (role, model) of a task's ``llm.usage`` events, then a total row."""
    rows: dict[tuple[str, str], UsageRow] = {}
    total = UsageRow(task_id, "*", "*")
    for event in events:
        usage = event.data
        if not isinstance(usage, LlmUsage):
            continue
        row = rows.setdefault((usage.role, usage.model), UsageRow(task_id, usage.role, usage.model))
        for target in (row, total):
            target.calls += 1
            target.cache_hits += usage.cache_hit
            if not usage.cache_hit:
                target.input_tokens += usage.input_tokens
                target.output_tokens += usage.output_tokens
                target.cost_usd += usage.cost_usd
                target.latency_ms += usage.latency_ms
    return [*rows.values(), total] if rows else []


# ------------------------------------------------------------------- compaction


def estimate_tokens(messages: list[ModelMessage]) -> int:
    chars = 0
    for message in messages:
        if isinstance(message, ModelRequest) and message.instructions:
            chars += len(message.instructions)
        for part in message.parts:
            chars += len(_part_text(part))
    return chars // CHARS_PER_TOKEN + 1


def _part_text(part: Any) -> str:
    if isinstance(part, ToolCallPart):
        return part.args_as_json_str()
    content = getattr(part, "content", "")
    return content if isinstance(content, str) else json.dumps(content, default=str)


@dataclass
class Compactor:
    """Keeps one role's conversation under ``max_tokens`` (a pydantic-ai history processor).

    Over budget, it trims every long tool output, retry message and prompt to its last
    ``trim_chars`` characters (where errors end), then, if still over, replaces the turns
    between the first request and the last exchange with a short summary of them.
    """

    role: str
    max_tokens: int
    trim_chars: int
    compactions: list[ContextCompacted] = field(default_factory=list)
    """Where each compaction is recorded (a stage run shares one list by its compactors)."""

    async def __call__(self, messages: list[ModelMessage]) -> list[ModelMessage]:
        before = estimate_tokens(messages)
        if before <= self.max_tokens:
            return messages
        trimmed_chars = 0
        out: list[ModelMessage] = []
        for message in messages:
            parts: list[Any] = []
            for part in message.parts:
                new, cut = self._trim(part)
                trimmed_chars += cut
                parts.append(new)
            out.append(dataclasses.replace(message, parts=parts))  # type: ignore[arg-type]
        dropped: list[str] = []
        if estimate_tokens(out) > self.max_tokens and len(out) > 3:
            middle = out[1:-2]
            dropped = [_describe(m) for m in middle]
            summary = (
                f"(forgeline compacted {len(middle)} earlier message(s) of this conversation "
                "to stay within the context budget. Summary: " + "; ".join(dropped) + ")"
            )
            first = out[0]
            assert isinstance(first, ModelRequest)
            out = [
                ModelRequest(
                    parts=[*first.parts, UserPromptPart(summary)],
                    instructions=first.instructions,
                ),
                *out[-2:],
            ]
        after = estimate_tokens(out)
        self.compactions.append(
            ContextCompacted(
                role=self.role,
                summary=(
                    f"{self.role} conversation compacted from about {before} to {after} tokens"
                    f" (budget {self.max_tokens}): {len(dropped)} message(s) summarised, "
                    f"{trimmed_chars} characters of long output trimmed"
                ),
                dropped_items=tuple(dropped),
                tokens_before=before,
                tokens_after=after,
                trimmed_chars=trimmed_chars,
            )
        )
        return out

    def _trim(self, part: Any) -> tuple[Any, int]:
        """``part`` with its text cut to ``trim_chars`` (its head and, where errors end, its
        tail), and how many characters were cut."""
        if isinstance(part, ToolCallPart):
            text = part.args_as_json_str()
        elif isinstance(part, UserPromptPart | ToolReturnPart | RetryPromptPart | SystemPromptPart):
            text = _part_text(part)
        else:
            return part, 0
        if len(text) <= self.trim_chars:
            return part, 0
        head = self.trim_chars // 3
        tail = self.trim_chars - head
        cut = len(text) - self.trim_chars
        kept = f"{text[:head]}\n... ({cut} characters trimmed by forgeline) ...\n{text[-tail:]}"
        field = "args" if isinstance(part, ToolCallPart) else "content"
        return dataclasses.replace(part, **{field: kept}), cut


def merged_compaction(compactions: list[ContextCompacted]) -> ContextCompacted | None:
    """One event for all compactions of a stage run (the store keeps one per cause and
    type): the last one's sizes and summary, every dropped item, all trimmed characters."""
    if not compactions:
        return None
    return compactions[-1].model_copy(
        update={
            "dropped_items": tuple(d for c in compactions for d in c.dropped_items),
            "tokens_before": max(c.tokens_before for c in compactions),
            "trimmed_chars": sum(c.trimmed_chars for c in compactions),
        }
    )


def _describe(message: ModelMessage) -> str:
    bits: list[str] = []
    for part in message.parts:
        if isinstance(part, ToolCallPart):
            bits.append(f"called {part.tool_name}")
        elif isinstance(part, RetryPromptPart):
            text = part.content if isinstance(part.content, str) else json.dumps(part.content)
            bits.append(f"was told to retry: {text.strip().splitlines()[0][:120]}")
        elif isinstance(part, ToolReturnPart):
            bits.append(f"{part.tool_name} returned {len(_part_text(part))} chars")
        else:
            text = _part_text(part).strip()
            if text:
                bits.append(text.splitlines()[0][:120])
    who = "model" if isinstance(message, ModelResponse) else "forgeline"
    return f"{who}: " + (", ".join(bits) or "(empty)")
