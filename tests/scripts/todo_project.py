"""Scripted models that build a small todo CLI, for pipeline, CLI and e2e tests.

Each role gets a ``FunctionModel`` answering from this script. The module attributes
(``planner``, ``architect``, ...) are zero-argument factories, so a forgeline process can
load them from configuration: ``function:tests.scripts.todo_project:planner``.

Environment knobs (read when a factory is called), for tests that run forgeline as a
subprocess:
- ``TODO_SCRIPT_BUGGY=1``: the coder's first version has a bug the tests catch; the fixer
  repairs it.
- ``TODO_SCRIPT_BLOCK=<role>`` and ``TODO_SCRIPT_MARKER=<path>``: that role writes the
  marker file and then hangs, so a test can kill the process mid-stage.
- ``TODO_SCRIPT_SLOW=<role>`` (with ``TODO_SCRIPT_MARKER``): that role writes the marker,
  takes ``TODO_SCRIPT_DELAY`` seconds (default 3), then answers.
- ``TODO_SCRIPT_FORBID=<role>,<role>``: those roles fail if they are called at all (proves
  a resume does not re-run finished stages).
- ``TODO_SCRIPT_STREAM=<role>,<role>``: those roles stream their answers slowly, a few
  characters every ``TODO_SCRIPT_PAUSE`` seconds (default 0.05).
- ``TODO_SCRIPT_SLOW_TESTS=<seconds>``: the coder's test file also has three tests that
  take that long each; the first writes ``tests-started`` in the directory pytest runs in.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.llm.scripted import (
    Answer,
    prompt_text,
    scripted_function,
    scripted_model,
    streaming_model,
)

TODO_PY = '''"""A todo list kept in todo.json."""

import json
import sys
from pathlib import Path

PATH = Path("todo.json")


def load(path: Path = PATH) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def save(items: list[dict], path: Path = PATH) -> None:
    path.write_text(json.dumps(items, indent=2))


def add(text: str, path: Path = PATH) -> int:
    items = load(path)
    items.append({"text": text, "done": False})
    save(items, path)
    return len(items)


def done(number: int, path: Path = PATH) -> None:
    items = load(path)
    items[number - 1]["done"] = True
    save(items, path)


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "list":
        for i, item in enumerate(load(), 1):
            print(f"{i}. [{'x' if item['done'] else ' '}] {item['text']}")
        return 0
    if argv[0] == "add":
        print(add(" ".join(argv[1:])))
        return 0
    if argv[0] == "done":
        done(int(argv[1]))
        return 0
    print("usage: todo.py [list | add TEXT | done N]")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

BUGGY_TODO_PY = TODO_PY.replace('items[number - 1]["done"] = True', 'items[number]["done"] = True')

TEST_TODO_PY = """from todo import add, done, load


def test_add_stores_items_in_order(tmp_path):
    path = tmp_path / "todo.json"
    assert add("milk", path) == 1
    assert add("eggs", path) == 2
    assert [i["text"] for i in load(path)] == ["milk", "eggs"]


def test_done_marks_the_numbered_item(tmp_path):
    path = tmp_path / "todo.json"
    add("milk", path)
    add("eggs", path)
    done(1, path)
    assert [i["done"] for i in load(path)] == [True, False]
"""

PLAN: dict[str, Any] = {
    "summary": "A todo CLI storing items in todo.json",
    "items": [
        {
            "id": "a",
            "title": "todo module and CLI",
            "description": "todo.py with add/done/load and a main()",
            "files": ["todo.py"],
        },
        {
            "id": "b",
            "title": "tests",
            "description": "pytest tests for add and done",
            "depends_on": ["a"],
            "files": ["test_todo.py"],
        },
    ],
}

ARCHITECTURE: dict[str, Any] = {
    "summary": "One module todo.py, JSON file storage, argv commands.",
    "decision": "## Context\nA small CLI.\n\n## Decision\nStandard library only.\n",
    "files": [{"path": "todo.py", "purpose": "store and CLI"}, {"path": "test_todo.py"}],
    "run": {"kind": "cli", "command": ["python", "todo.py", "list"]},
}

APPROVE: dict[str, Any] = {"approved": True, "comments": []}

# The task's events when everything goes right with this script.
EVENT_CHAIN = [
    "task.initiated",
    "spec.derived",
    "plan.created",
    "task.assigned",
    "architecture.proposed",
    "plan.item.dispatched",
    "plan.item.completed",
    "plan.item.dispatched",
    "plan.item.completed",
    "code.pr.opened",
    "test.results",
    "review.decision",
    "deploy.status",
    "task.completed",
]


def slow_tests(seconds: float) -> str:
    """Three tests that take ``seconds`` each; the first leaves ``tests-started`` behind."""
    return (
        '\n\ndef test_slow_0():\n    import time\n    open("tests-started", "w").close()\n'
        f"    time.sleep({seconds})\n"
        + "".join(
            f"\n\ndef test_slow_{i}():\n    import time\n    time.sleep({seconds})\n"
            for i in (1, 2)
        )
    )


def code_for(messages: list[ModelMessage], buggy: bool = False) -> dict[str, Any]:
    """The coder's answer for whichever plan step it was asked to implement."""
    text = prompt_text(messages)
    if "Implement step [b]" in text:
        tests = TEST_TODO_PY
        if seconds := os.environ.get("TODO_SCRIPT_SLOW_TESTS"):
            tests += slow_tests(float(seconds))
        return {"summary": "tests", "files": [{"path": "test_todo.py", "content": tests}]}
    body = BUGGY_TODO_PY if buggy else TODO_PY
    return {"summary": "todo module", "files": [{"path": "todo.py", "content": body}]}


def fixed(_messages: list[ModelMessage]) -> dict[str, Any]:
    return {"summary": "index from 1", "files": [{"path": "todo.py", "content": TODO_PY}]}


def hanging_model(answer: dict[str, Any], marker: Path) -> Model:
    """Answers nothing: writes ``marker`` and hangs (until the process is killed)."""

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        marker.write_text("reached")
        await asyncio.sleep(3600)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])

    return FunctionModel(respond, model_name="hanging")


def _model(role: str, answers: list[Answer], final: dict[str, Any]) -> Model:
    if os.environ.get("TODO_SCRIPT_BLOCK") == role:
        return hanging_model(final, Path(os.environ["TODO_SCRIPT_MARKER"]))
    if role in os.environ.get("TODO_SCRIPT_FORBID", "").split(","):

        def forbidden(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            raise AssertionError(f"the {role} model was called again")

        return FunctionModel(forbidden, model_name="forbidden")
    if os.environ.get("TODO_SCRIPT_SLOW") == role:
        respond = scripted_function(answers)
        marker = Path(os.environ["TODO_SCRIPT_MARKER"])
        delay = float(os.environ.get("TODO_SCRIPT_DELAY", "3"))

        async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            marker.write_text("reached")
            await asyncio.sleep(delay)
            return respond(messages, info)

        return FunctionModel(slow, model_name="slow")
    if role in os.environ.get("TODO_SCRIPT_STREAM", "").split(","):
        pause = float(os.environ.get("TODO_SCRIPT_PAUSE", "0.05"))
        return streaming_model(answers, pause=pause, name=f"todo-{role}")
    return scripted_model(answers, name=f"todo-{role}")


def planner() -> Model:
    return _model("planner", [PLAN], PLAN)


def architect() -> Model:
    return _model("architect", [ARCHITECTURE], ARCHITECTURE)


def coder() -> Model:
    buggy = os.environ.get("TODO_SCRIPT_BUGGY") == "1"
    return _model("coder", [lambda m: code_for(m, buggy)], {})


def fixer() -> Model:
    return _model("fixer", [fixed], {})


def reviewer() -> Model:
    return _model("reviewer", [APPROVE], APPROVE)


def models(**overrides: Model) -> dict[str, Model]:
    """Every role's model, with ``overrides`` for the roles a test scripts differently."""
    built = {
        "planner": planner(),
        "architect": architect(),
        "coder": coder(),
        "fixer": fixer(),
        "reviewer": reviewer(),
    }
    return built | overrides


CONFIG = """
[models]
planner = "function:tests.scripts.todo_project:planner"
architect = "function:tests.scripts.todo_project:architect"
coder = "function:tests.scripts.todo_project:coder"
fixer = "function:tests.scripts.todo_project:fixer"
reviewer = "function:tests.scripts.todo_project:reviewer"
"""
