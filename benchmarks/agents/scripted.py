"""A scripted model that plays every role for the suite's requests: a dry run of the
benchmark without any real model, and the smoke test's model.

``--model function:benchmarks.agents.scripted:model`` gives every role (and the single
shot) this one ``FunctionModel``. It finds the request in the conversation, tells the
role from the instructions, and answers from the suite's reference solutions, with two
deliberate exceptions that make the benchmark's counting visible:

- ``todo``: the first version (the coder's, and the single shot's) marks the wrong item
  done; its own tests catch that, and the fixer's answer is the reference. So the
  pipeline passes after one fixer round and the single shot fails the hidden tests.
- ``slugify``: every version leaves hyphens at the ends; its own tests do not notice, so
  the pipeline completes and both ways fail the hidden tests.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from benchmarks.agents.suite import SUITE, BenchRequest

#: Entries whose first version has a bug its own tests catch (the fixer repairs it).
CAUGHT_BUGS = {
    "todo": ("items[int(argv[1]) - 1]", "items[int(argv[1])]"),
}
#: Entries whose every version has a bug only the hidden tests catch.
HIDDEN_BUGS = {
    "slugify": ('text.lower()).strip("-")', "text.lower())"),
}

AGENT_TESTS = {
    "todo": """
        import subprocess
        import sys
        from pathlib import Path

        SCRIPT = Path(__file__).resolve().parent / "todo.py"


        def todo(cwd, *args):
            return subprocess.run(
                [sys.executable, str(SCRIPT), *args],
                cwd=cwd, capture_output=True, text=True, check=True,
            ).stdout


        def test_done_marks_the_numbered_item(tmp_path):
            todo(tmp_path, "add", "milk")
            todo(tmp_path, "add", "eggs")
            todo(tmp_path, "done", "1")
            assert todo(tmp_path, "list").splitlines() == ["1. [x] milk", "2. [ ] eggs"]
    """,
    "slugify": """
        from slugify import slugify


        def test_spaces_become_hyphens():
            assert slugify("hello world") == "hello-world"
    """,
}


def _prompt(messages: list[ModelMessage]) -> str:
    parts: list[str] = []
    for message in messages:
        if isinstance(message, ModelRequest) and message.instructions:
            parts.append(message.instructions)
        for part in message.parts:
            content = getattr(part, "content", None)
            if isinstance(content, str):
                parts.append(content)
    return "\n".join(parts)


def _request(text: str) -> BenchRequest:
    for request in SUITE:
        if request.request in text:
            return request
    raise ValueError("the scripted model only knows the requests of benchmarks/agents/suite.py")


def _role(instructions: str) -> str:
    for role in ("planner", "architect", "coder", "fixer", "reviewer"):
        if f"You are the {role}" in instructions:
            return role
    return "single_shot"


def solution(request: BenchRequest, *, fixed: bool) -> dict[str, str]:
    """The files the script answers with: the reference (with its bug, if the entry has
    one and this is not the fixed version) and tests of the agents' own."""
    files = request.reference()
    bugs = dict(HIDDEN_BUGS)
    if not fixed:
        bugs |= CAUGHT_BUGS
    if request.name in bugs:
        good, bad = bugs[request.name]
        [(path, text)] = [(p, t) for p, t in files.items() if good in t]
        files[path] = text.replace(good, bad)
    module = next(iter(files)).removesuffix(".py")
    default_test = f"import {module}\n\n\ndef test_imports():\n    assert {module}\n"
    test = AGENT_TESTS.get(request.name)
    files[f"test_{module}.py"] = textwrap.dedent(test).lstrip() if test else default_test
    return files


def answer(role: str, request: BenchRequest) -> dict[str, Any]:
    """The role's structured output for ``request``."""
    files = solution(request, fixed=role == "fixer")
    if role == "planner":
        return {
            "summary": f"The {request.name} request as one module and its tests",
            "items": [
                {
                    "id": "a",
                    "title": "implementation and tests",
                    "description": "Write the module and its pytest tests.",
                    "files": sorted(files),
                }
            ],
        }
    if role == "architect":
        return {
            "summary": f"{', '.join(sorted(files))}; standard library only.",
            "decision": "## Context\nA small request.\n\n## Decision\nOne module and tests.\n",
            "files": [{"path": path} for path in sorted(files)],
            "run": {"kind": "library", "command": []},
            "packages": [
                {"name": name, "reason": "the request needs it"} for name in request.packages
            ],
        }
    if role == "reviewer":
        return {"approved": True, "comments": []}
    return {
        "summary": f"{request.name}: {role}",
        "files": [{"path": p, "content": t} for p, t in files.items()],
    }


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    text = _prompt(messages)
    role = _role(info.instructions or text)
    body = json.dumps(answer(role, _request(text)))
    if not info.output_tools:
        return ModelResponse(parts=[TextPart(body)])
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, body)])


def model() -> FunctionModel:
    return FunctionModel(respond, model_name="agents-bench-script")
