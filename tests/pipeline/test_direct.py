"""Spec -> candidates -> select in the pipeline, on the small tier, with scripted models:
routing by size, the choice by the spec and agreement, fresh repairs and resampling,
what lands, the planner after a failed attempt, and an honest failure."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import (
    CandidateChosen,
    CandidateRecorded,
    DeployStatus,
    SpecDerived,
    TestResults,
)
from forgeline.llm.scripted import prompt_text
from forgeline.pipeline import prompts
from forgeline.selection.candidate import CANDIDATE_INSTRUCTIONS
from forgeline.selection.designer import DESIGNER_INSTRUCTIONS
from forgeline.selection.repair import REPAIR_INSTRUCTIONS
from forgeline.spec.copier import COPIER_INSTRUCTIONS
from tests.llm.test_metering import forbidden
from tests.pipeline.harness import pipeline, run_task, task_events

REQUEST = (
    "Write slugify.py with a function slugify(text: str) -> str that turns a title into a "
    "URL slug: lower case, runs of other characters become one hyphen, no hyphen at the "
    'ends. For example slugify("Hello, World!") == "hello-world".'
)


def program(body: str, tests: str = "") -> str:
    code = "import re\n\n\ndef slugify(text: str) -> str:\n" + textwrap.indent(body, "    ")
    return f"Here it is.\n\nslugify.py\n```python\n{code}\n```\n{tests}"


OWN_TESTS = """
test_slugify.py
```python
from slugify import slugify


def test_words():
    assert slugify("A b") == "a-b"
```

test_wrong.py
```python
from slugify import slugify


def test_expects_the_wrong_thing():
    assert slugify("A b") == "A_b"
```
"""
RIGHT_A = program('return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")')
RIGHT_B = program(
    'words = re.findall(r"[a-z0-9]+", text.lower())\nreturn "-".join(words)', OWN_TESTS
)
KEEPS_CASE = program('return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")')
KEEPS_HYPHENS = program('return re.sub(r"[^a-z0-9]+", "-", text.lower())')
DESIGNED = """```python
assert slugify("A B") == "a-b"
assert slugify("  x  ") == "x"
assert slugify("") == "wrong"
```"""

#: The planner's, the architect's and the plan step's answers after a failed attempt.
PLAN = {
    "summary": "slugify in one module",
    "items": [{"id": "a", "title": "slugify", "description": "write it", "files": ["slugify.py"]}],
}
DESIGN = {"summary": "one module", "decision": "stdlib", "run": {"kind": "library"}}


class Script:
    """One model for every role of the small tier: it answers by the instructions it is
    given, keeps each prompt, and fails the test on a call it does not expect."""

    def __init__(self, samples: list[str], repair: str = RIGHT_A, step: str = RIGHT_A) -> None:
        self.samples = samples
        self.repair = repair
        self.step = step
        self.prompts: dict[str, list[str]] = {}
        self.lengths: dict[str, list[int]] = {}

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        request = messages[0]
        assert isinstance(request, ModelRequest)
        instructions = request.instructions or ""
        role = {
            COPIER_INSTRUCTIONS: "copier",
            CANDIDATE_INSTRUCTIONS: "candidate",
            DESIGNER_INSTRUCTIONS: "designer",
            REPAIR_INSTRUCTIONS: "repair",
        }.get(instructions)
        if role is None:
            role = next(r for r in ("planner", "architect", "coder") if _is(r, instructions))
        self.prompts.setdefault(role, []).append(prompt_text(messages))
        self.lengths.setdefault(role, []).append(len(messages))
        if role in ("planner", "architect", "coder"):
            answer = {"planner": PLAN, "architect": DESIGN}.get(role) or _files(self.step)
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])
        text = {"copier": "NONE", "designer": DESIGNED, "repair": self.repair}.get(role)
        if text is None:
            text = self.samples[(len(self.prompts["candidate"]) - 1) % len(self.samples)]
        return ModelResponse(parts=[TextPart(text)])

    def models(self, **overrides: Model) -> dict[str, Model]:
        model = FunctionModel(self.respond, model_name="small-script")
        roles = {r: model for r in ("planner", "architect", "coder", "fixer")}
        return roles | {"reviewer": forbidden("reviewer")} | overrides


def _is(role: str, instructions: str) -> bool:
    return instructions.startswith({"planner": prompts.PLANNER, "architect": prompts.ARCHITECT,
                                    "coder": prompts.CODER}[role])  # fmt: skip


def _files(answer: str) -> dict[str, Any]:
    code = answer.split("```python\n", 1)[1].split("```", 1)[0]
    return {"summary": "MODEL TEXT", "files": [{"path": "slugify.py", "content": code}]}


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


async def test_a_request_for_one_module_goes_straight_to_the_candidates(tmp_path: Path) -> None:
    script = Script([KEEPS_CASE, RIGHT_B, KEEPS_HYPHENS, RIGHT_A, RIGHT_B])
    async with pipeline(tmp_path, script.models(), profile="small") as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
        worktree = p.worktree(state).path
    assert state.status == "completed", state.failure
    assert [e.type for e in events] == [
        "task.initiated",
        "spec.derived",
        *["candidate.recorded"] * 5,
        "candidate.chosen",
        "code.pr.opened",
        "test.results",
        "review.skipped",  # the small tier's model reviews nothing a test does not check
        "deploy.status",
        "task.completed",
    ]
    assert set(script.prompts) == {"copier", "candidate", "designer"}  # no plan, no review
    # the spec, as the user reads it, and the facts its route followed from
    [spec] = [e.data for e in events if isinstance(e.data, SpecDerived)]
    assert (spec.files, spec.tier, spec.plans, spec.review) == (
        ("slugify.py",), "small", "multi_module", False
    )  # fmt: skip
    assert spec.interface == ("slugify(text: str) -> str",)
    assert spec.trials == ('assert slugify("Hello, World!") == "hello-world"',)
    assert [c.label for c in spec.checks][-1].startswith('slugify("Hello, World!")')
    # every candidate recorded with what it passed; one identical prompt for all of them
    recorded = [e.data for e in events if isinstance(e.data, CandidateRecorded)]
    assert [r.spec_passed for r in recorded] == [2, 3, 2, 3, 3]
    assert [r.seed for r in recorded] == [1, 2, 3, 4, 5]
    assert len(set(script.prompts["candidate"])) == 1
    assert all("def slugify" not in text for text in script.prompts["designer"])
    [chosen] = [e.data for e in events if isinstance(e.data, CandidateChosen)]
    assert chosen.spec_ok and chosen.index == 1 and chosen.digest == recorded[1].digest
    assert "passes all 3 spec checks" in chosen.reason
    # what lands: the chosen code, the spec's checks, the designer tests the consensus
    # agreed on and the candidate's own test that passes; not its failing one
    assert "re.findall" in (worktree / "slugify.py").read_text()
    tracked = set(git(worktree, "ls-files").split())
    assert {"test_spec_interface.py", "test_spec_examples.py", "test_designed.py"} <= tracked
    assert "test_slugify.py" in tracked and "test_wrong.py" not in tracked
    designed = (worktree / "test_designed.py").read_text()
    assert '"a-b"' in designed and '"wrong"' not in designed
    assert set(chosen.tests) == {
        "test_spec_interface.py", "test_spec_examples.py", "test_designed.py", "test_slugify.py"
    }  # fmt: skip
    [results] = [e.data for e in events if isinstance(e.data, TestResults)]
    assert (results.passed, results.failed) == (3 + 2 + 1, 0)
    # commit messages are forgeline's: never the model's words
    subjects = git(worktree, "log", "--format=%s", f"{state.base_commit}..HEAD").splitlines()
    assert subjects[-1] == "forgeline planner: the request's checks"
    assert subjects[0].startswith("forgeline coder: candidate 2 of 5 (sample, ")
    assert not any("Here it is" in s for s in subjects)
    [deploy] = [e.data for e in events if isinstance(e.data, DeployStatus)]
    assert deploy.ok and deploy.kind == "library"  # imports slugify, as the spec says


async def test_no_candidate_meets_the_spec_one_fresh_repair_then_a_new_sample(
    tmp_path: Path,
) -> None:
    # five samples keep the case, the repair keeps the hyphens, the new sample is right
    script = Script([KEEPS_CASE] * 5 + [RIGHT_A] * 5, repair=KEEPS_HYPHENS)
    async with pipeline(tmp_path, script.models(), profile="small") as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    recorded = [e.data for e in events if isinstance(e.data, CandidateRecorded)]
    assert [r.origin for r in recorded] == ["sample"] * 5 + ["repair"] + ["sample"] * 5
    assert [r.seed for r in recorded if r.origin == "sample"] == list(range(1, 11))
    [chosen] = [e.data for e in events if isinstance(e.data, CandidateChosen)]
    assert (chosen.spec_ok, chosen.repairs, chosen.resamples) == (True, 1, 1)
    assert recorded[chosen.index or 0].origin == "sample" and chosen.index >= 6  # type: ignore[operator]
    # the repair: a conversation of its own with the request, one candidate, one error
    [repair] = script.prompts["repair"]
    assert script.lengths["repair"] == [1]
    assert REQUEST in repair and repair.count("def slugify") == 1
    assert "hello-world" in repair and "AssertionError" in repair


async def test_a_failed_direct_attempt_goes_to_the_planner_with_the_closest_on_the_branch(
    tmp_path: Path,
) -> None:
    script = Script([KEEPS_CASE], repair=KEEPS_CASE, step=RIGHT_A)
    async with pipeline(tmp_path, script.models(), profile="small") as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
        worktree = p.worktree(state).path
    assert state.status == "completed", state.failure
    types = [e.type for e in events]
    at = types.index("candidate.chosen")
    assert types[at + 1 : at + 5] == [
        "plan.created",
        "task.assigned",
        "architecture.proposed",
        "plan.item.dispatched",
    ]
    [chosen] = [e.data for e in events if isinstance(e.data, CandidateChosen)]
    assert not chosen.spec_ok and chosen.commit
    assert "no candidate passes every spec check" in chosen.reason
    # the closest candidate was on the branch when the planner ran, and it knew
    assert "[^A-Za-z0-9]" in git(worktree, "show", f"{chosen.commit}:slugify.py")
    assert "A first attempt without a plan met none" in script.prompts["planner"][0]
    assert "re.sub" in (worktree / "slugify.py").read_text()
    assert "text.lower()" in (worktree / "slugify.py").read_text()
    subjects = git(worktree, "log", "--format=%s", f"{state.base_commit}..HEAD")
    assert "MODEL TEXT" not in subjects


async def test_a_task_that_never_meets_the_spec_fails_naming_the_check(tmp_path: Path) -> None:
    script = Script([KEEPS_CASE], repair=KEEPS_CASE, step=KEEPS_CASE)
    async with pipeline(tmp_path, script.models(), profile="small", max_fix_rounds=0) as p:
        _, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        worktree = p.worktree(state).path
    assert state.status == "failed"
    failure = state.failure or ""
    assert 'the spec\'s check \'slugify("Hello, World!") == "hello-world"' in failure
    assert f"on branch {state.branch}" in failure
    # the closest code is on the branch, with the checks it fails
    assert (worktree / "slugify.py").exists() and (worktree / "test_spec_examples.py").exists()


async def test_a_request_for_several_modules_is_planned(tmp_path: Path) -> None:
    request = "Write store.py with a class Store(path) and cli.py with main(argv) that uses it."
    script = Script([RIGHT_A])
    plan = {
        "summary": "two modules",
        "items": [
            {"id": "a", "title": "store", "files": ["store.py"]},
            {"id": "b", "title": "cli", "files": ["cli.py"], "depends_on": ["a"]},
        ],
    }

    def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not info.output_tools:  # the example copier: the request has none
            return ModelResponse(parts=[TextPart("NONE")])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, plan)])

    def coder(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        text = prompt_text(messages)
        if "Implement step [a]" in text:
            files = [
                {
                    "path": "store.py",
                    "content": "class Store:\n    def __init__(self, path):\n        pass\n",
                }
            ]
        else:
            files = [{"path": "cli.py", "content": "def main(argv):\n    return 0\n"}]
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"files": files})])

    models = script.models(planner=FunctionModel(planner), coder=FunctionModel(coder))
    async with pipeline(tmp_path, models, profile="small") as p:
        task_id, state = await run_task(p, request, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    types = [e.type for e in events]
    assert types[:3] == ["task.initiated", "spec.derived", "plan.created"]
    assert "candidate.recorded" not in types
    assert "review.skipped" in types and "review.decision" not in types
