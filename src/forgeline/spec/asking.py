"""One model call that answers text: the shape every small step of the spec and selection
flow uses (the copier, the candidates, the test designer, the repair).

Each step is a function that takes a pydantic-ai model (or a ``provider:model`` name) and
returns what it parsed together with the answer's ``ModelAnswer`` (text, tokens, time),
so a caller can record the call and a test can script it (``forgeline.llm.scripted``).
"""

from __future__ import annotations

import time

from pydantic_ai import Agent
from pydantic_ai.models import KnownModelName, Model
from pydantic_ai.settings import ModelSettings

from forgeline.spec.model import SpecModel

AnyModel = Model | KnownModelName | str


class ModelAnswer(SpecModel):
    """One answer: its text, its tokens, how long it took, and how it was sampled."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    temperature: float | None = None
    seed: int | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


async def ask(
    model: AnyModel,
    instructions: str,
    prompt: str,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    timeout: float | None = None,
) -> ModelAnswer:
    """Ask ``model`` once, with no tools and no retries; the answer as text."""
    settings: ModelSettings = {}
    if temperature is not None:
        settings["temperature"] = temperature
    if seed is not None:
        settings["seed"] = seed
    if timeout is not None:
        settings["timeout"] = timeout
    agent = Agent(model, instructions=instructions, output_type=str, retries=0)
    started = time.perf_counter()
    result = await agent.run(prompt, model_settings=settings)
    usage = result.usage
    return ModelAnswer(
        text=result.output,
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        seconds=round(time.perf_counter() - started, 3),
        temperature=temperature,
        seed=seed,
    )
