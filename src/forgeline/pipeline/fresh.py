"""Asking again without the refused answer: every attempt a conversation of its own.

A small model shown its own refused answer copies it (the agents benchmark saw the same
622 tokens three times at temperatures 0.5 to 1.0). So when a validator refuses an answer
(``ModelRetry``), forgeline asks again in a fresh conversation: the same prompt with the
reason appended (``prompts.REFUSED``), sampled at the tier's temperature with the next
seed. The refused answer itself never reaches a model again.

The attempts share one conversation id, though their messages do not: the meter counts
repeats per conversation, so a model that sends the same refused answer ``loop_limit``
times stops the stage (``LoopDetected``) instead of spending every attempt.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic_ai import Agent, AgentRunResult, ModelRetry
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.settings import ModelSettings

from forgeline.errors import StageError
from forgeline.llm.metered import LoopDetected
from forgeline.pipeline import prompts


def refusal(exc: UnexpectedModelBehavior) -> tuple[str, BaseException | None]:
    """Why the answer was refused (the validator's or the schema's words), and the
    validator's ``ModelRetry`` when it was one."""
    cause = exc.__cause__
    reason = str(cause) if cause is not None and str(cause) else str(exc)
    # a structured answer's validator raises through; a text answer's is wrapped once
    retry = cause if isinstance(cause, ModelRetry) else getattr(cause, "__cause__", None)
    return reason, retry


def sampling(seed: int, temperature: float) -> ModelSettings:
    """Attempt ``seed``'s settings: the configured ones first, then sampled afresh."""
    return {"temperature": temperature, "seed": seed} if seed else {}


def with_reason(prompt: str, told: str | None) -> str:
    return f"{prompt}\n\n{prompts.REFUSED.format(reason=told)}" if told else prompt


async def ask_afresh(
    agent: Agent[Any, Any],
    prompt: str,
    *,
    attempts: int,
    temperature: float,
    what: str,
) -> AgentRunResult[Any]:
    """Run ``agent`` (built with no output retries) on ``prompt`` until an answer passes
    its validators, at most ``attempts`` times, each in a fresh conversation."""
    told: str | None = None
    conversation = uuid4().hex  # one question: a repeated refused answer is a loop
    for seed in range(attempts):
        try:
            return await agent.run(
                with_reason(prompt, told),
                model_settings=sampling(seed, temperature),
                conversation_id=conversation,
            )
        except UnexpectedModelBehavior as exc:
            told, _ = refusal(exc)
        except LoopDetected as exc:
            if told is None:
                raise
            raise LoopDetected(f"{exc}. It was refused because: {told}") from exc
    raise StageError(f"{what}: no usable answer in {attempts} attempt(s); the last: {told}")
