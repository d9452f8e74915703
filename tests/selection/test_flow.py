"""The whole flow on scripted models: candidates, checks, votes, a fresh repair."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.llm.scripted import prompt_text
from forgeline.sandbox.local import LocalSpawner
from forgeline.selection import CandidateRunner, select
from forgeline.selection.candidate import CANDIDATE_INSTRUCTIONS
from forgeline.selection.designer import DESIGNER_INSTRUCTIONS, read_designed
from forgeline.selection.repair import REPAIR_INSTRUCTIONS
from forgeline.spec import derive_spec
from forgeline.spec.copier import COPIER_INSTRUCTIONS

REQUEST = (
    "Write slugify.py with a function slugify(text: str) -> str that turns a title into a "
    "URL slug: lower case, runs of other characters become one hyphen, no hyphen at the "
    'ends. For example slugify("Hello, World!") == "hello-world".'
)


def program(body: str) -> str:
    code = "import re\n\n\ndef slugify(text: str) -> str:\n" + textwrap.indent(body, "    ")
    return f"slugify.py\n```python\n{code}\n```\n"


RIGHT_A = program('return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")')
RIGHT_B = program('words = re.findall(r"[a-z0-9]+", text.lower())\nreturn "-".join(words)')
KEEPS_CASE = program('return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")')
KEEPS_HYPHENS = program('return re.sub(r"[^a-z0-9]+", "-", text.lower())')
DESIGNED = """```python
assert slugify("A B") == "a-b"
assert slugify("  x  ") == "x"
assert slugify("") == "wrong"
```"""


class Script:
    """A model that answers by role, from the instructions, and keeps every prompt."""

    def __init__(self, samples: list[str], repair: str = RIGHT_A) -> None:
        self.samples = samples
        self.repair = repair
        self.prompts: dict[str, list[str]] = {}

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        request = messages[-1]
        assert isinstance(request, ModelRequest)
        instructions = request.instructions or ""
        role = {
            COPIER_INSTRUCTIONS: "copier",
            CANDIDATE_INSTRUCTIONS: "candidate",
            DESIGNER_INSTRUCTIONS: "designer",
            REPAIR_INSTRUCTIONS: "repair",
        }[instructions]
        self.prompts.setdefault(role, []).append(prompt_text(messages))
        assert len(messages) == 1  # every call is a conversation of its own
        if role == "copier":
            text = "NONE"
        elif role == "designer":
            text = DESIGNED
        elif role == "repair":
            text = self.repair
        else:
            text = self.samples[(len(self.prompts["candidate"]) - 1) % len(self.samples)]
        return ModelResponse(parts=[TextPart(text)])

    def model(self) -> FunctionModel:
        return FunctionModel(self.respond, model_name="flow-script")


def runner(tmp_path: Path) -> CandidateRunner:
    return CandidateRunner(LocalSpawner(), venv=None, scratch=tmp_path, timeout=120)


async def test_the_spec_filters_and_the_consensus_chooses(tmp_path: Path) -> None:
    script = Script([KEEPS_CASE, RIGHT_B, KEEPS_HYPHENS, RIGHT_A, RIGHT_B])
    result = await select(
        script.model(), derive_spec(REQUEST), runner(tmp_path), candidates=5, designers=2
    )
    passing = [e.spec_ok for e in result.evaluations]
    assert passing == [False, True, False, True, True]
    # B twice, A once, each passing the same two designer tests: B's files win the tie.
    assert result.choice.index == 1
    assert result.chosen is not None and result.chosen.files["slugify.py"] in RIGHT_B
    assert result.repairs == 0
    assert len(result.designed) == 2 and len(result.designed[0].tests) == 3
    assert set(result.choice.consensus_tests) == {
        f"test_designer_{i}.py::test_designer_{i}_1_{n}" for i in (1, 2) for n in (1, 2)
    }  # the wrong third designer test fails everywhere and changes nothing
    prompts = script.prompts
    assert len(set(prompts["candidate"])) == 1  # one identical prompt for every sample
    assert all("KEEPS" not in p and "def slugify" not in p for p in prompts["designer"])
    spec_derived, recorded, chosen = result.records()
    assert spec_derived.trials == ('assert slugify("Hello, World!") == "hello-world"',)
    assert [r.spec_passed for r in recorded] == [2, 3, 2, 3, 3]
    assert {r.seed for r in recorded} == {1, 2, 3, 4, 5}
    assert chosen.digest == result.candidates[1].digest and chosen.spec_ok
    assert result.tokens > 0


async def test_when_nothing_passes_one_fresh_repair(tmp_path: Path) -> None:
    script = Script([KEEPS_HYPHENS, KEEPS_CASE])
    result = await select(
        script.model(), derive_spec(REQUEST), runner(tmp_path), candidates=2, designers=1
    )
    assert result.repairs == 1
    assert len(result.candidates) == 3 and result.candidates[2].origin == "repair"
    assert result.choice.index == 2 and result.choice.spec_ok
    [prompt] = script.prompts["repair"]
    # the request, the closest candidate and its one error; nothing else
    assert REQUEST in prompt
    assert prompt.count("def slugify") == 1
    assert "hello-world" in prompt and "AssertionError" in prompt
    assert "[^A-Za-z0-9]" not in prompt  # the other candidate never shows


async def test_designer_answers_are_cut_into_one_test_per_assert() -> None:
    spec = derive_spec(REQUEST)
    answer = """Set one:
```python
assert slugify("A") == "a"
assert slugify("B") == "b"

s = slugify("C D")
assert s == "c-d"
assert len(s) == 3
this is not python
```"""
    designed = read_designed(answer, spec, 3)
    assert designed.path == "test_designer_3.py"
    assert [t.code for t in designed.tests] == [
        'assert slugify("A") == "a"',
        'assert slugify("B") == "b"',
        's = slugify("C D")\nassert s == "c-d"',
        's = slugify("C D")\nassert len(s) == 3',
    ]
    assert 'slugify = find("slugify")' in designed.source


def test_a_designer_that_writes_the_program_too() -> None:
    """What the local model answered in a probe: the program and a test function. The
    program is dropped (it would replace the candidate's), the test's asserts kept."""
    answer = """```python
from typing import *
import re

def slugify(text: str) -> str:
    return re.sub(r'[^a-zA-Z0-9]', '-', text.lower()).strip('-')

def test_slugify():
    assert slugify("Hello, World!") == "hello-world"
    assert slugify("!!!") == ""
```"""
    designed = read_designed(answer, derive_spec(REQUEST), 1)
    assert [t.code for t in designed.tests] == [
        'assert slugify("Hello, World!") == "hello-world"',
        'assert slugify("!!!") == ""',
    ]
    assert "def slugify" not in designed.source


async def test_another_seed_samples_other_candidates(tmp_path: Path) -> None:
    """``[profiles.small] seed``: the same request sampled again from another seed."""
    script = Script([KEEPS_HYPHENS, KEEPS_CASE])
    result = await select(
        script.model(),
        derive_spec(REQUEST),
        runner(tmp_path),
        candidates=2,
        designers=1,
        seed=100,
    )
    seeds = [c.answer.seed for c in result.candidates if c.answer is not None]
    assert seeds == [101, 102, 100]  # the samples, then the first repair's
    assert [d.answer.seed for d in result.designed if d.answer is not None] == [101]
