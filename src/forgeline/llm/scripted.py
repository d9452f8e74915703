"""Scripted models: pydantic-ai ``FunctionModel``s that answer from a script.

For tests, benchmarks and dry runs. Each answer is the output a role should return, as a
dict (or a function of the conversation returning one); answers are used in order and the
last one repeats. An answer that fails validation exercises the retry path like a real
model would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

Answer = dict[str, Any] | str | Callable[[list[ModelMessage]], dict[str, Any] | str]


Respond = Callable[[list[ModelMessage], AgentInfo], ModelResponse]


def scripted_model(answers: Sequence[Answer], *, name: str = "scripted") -> FunctionModel:
    """A model returning ``answers`` in order as the role's structured output.

    A ``str`` answer is sent as raw tool arguments (so invalid JSON can be scripted).
    """
    return FunctionModel(scripted_function(answers), model_name=name)


def scripted_function(answers: Sequence[Answer]) -> Respond:
    """The function behind ``scripted_model``, for wrapping (delays, failures)."""
    if not answers:
        raise ValueError("a scripted model needs at least one answer")
    calls = 0

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        answer = answers[min(calls, len(answers) - 1)]
        calls += 1
        if callable(answer):
            answer = answer(messages)
        if not info.output_tools:
            text = answer if isinstance(answer, str) else json.dumps(answer)
            return ModelResponse(parts=[TextPart(text)])
        args = answer if isinstance(answer, str) else json.dumps(answer)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])

    return respond


def streaming_model(
    answers: Sequence[Answer], *, pause: float = 0.0, piece: int = 8, name: str = "scripted"
) -> FunctionModel:
    """``scripted_model``, streaming each answer in pieces of ``piece`` characters with
    ``pause`` seconds before each: a model that answers slowly, a piece at a time, as a
    local model streams its tokens. (Asked without streaming, it answers at once.)"""
    respond = scripted_function(answers)

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        for part in respond(messages, info).parts:
            if isinstance(part, TextPart):
                text = part.content
            elif isinstance(part, ToolCallPart):
                text = part.args_as_json_str()
            else:  # pragma: no cover (respond makes only these)
                continue
            for start in range(0, max(len(text), 1), piece):
                await asyncio.sleep(pause)
                chunk = text[start : start + piece]
                if isinstance(part, TextPart):
                    yield chunk
                else:
                    name_ = part.tool_name if start == 0 else None
                    yield {0: DeltaToolCall(name=name_, json_args=chunk)}

    return FunctionModel(respond, stream_function=stream, model_name=name)


def prompt_text(messages: list[ModelMessage]) -> str:
    """Everything the model was told so far, as text (for answers that depend on it)."""
    parts: list[str] = []
    for message in messages:
        for part in message.parts:
            content = getattr(part, "content", None)
            if isinstance(content, str):
                parts.append(content)
    return "\n".join(parts)
