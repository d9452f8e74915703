"""Scripted models for a request that needs a research step first: the todo CLI of
``todo_project``, planned after reading about a library.

The planner schedules a ``research`` step (a ``tool_call`` item) before the code; the
coder writes ``todo.py`` with a first comment line quoting the first reference of the
research notes it finds in its prompt (``# Research: none`` when there are none), so a
test sees, in the committed code, that the notes reached the coder. Loadable from
configuration like ``todo_project``: ``function:tests.scripts.research_project:planner``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import Model

from forgeline.llm.scripted import prompt_text, scripted_model
from tests.scripts import todo_project

TOPIC = "tomlkit: editing TOML"
SLUG = "tomlkit-editing-toml"

PLAN: dict[str, Any] = {
    "summary": "Read about tomlkit, then a todo CLI storing items in todo.json",
    "items": [
        {
            "id": "r",
            "title": "research",
            "kind": "tool_call",
            "description": TOPIC,
            "files": [],
        },
        {
            "id": "a",
            "title": "todo module and CLI",
            "description": "todo.py with add/done/load and a main()",
            "depends_on": ["r"],
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

EVENT_CHAIN = [
    "task.initiated",
    "plan.created",
    "task.assigned",
    "architecture.proposed",
    "plan.item.dispatched",  # r, the research step: its tool calls, then its result
    "tool.search",
    "tool.fetch",
    "tool.research",
    "plan.item.completed",
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

_REFERENCE = re.compile(r"^1\. (.+)$", re.MULTILINE)


def code_for(messages: list[ModelMessage]) -> dict[str, Any]:
    text = prompt_text(messages)
    if "Implement step [b]" in text:
        return todo_project.code_for(messages)
    notes = text.split("Research notes", 1)
    found = _REFERENCE.search(notes[1]) if len(notes) == 2 else None
    cited = found.group(1) if found else "none"
    body = f"# Research: {cited}\n{todo_project.TODO_PY}"
    return {"summary": "todo module", "files": [{"path": "todo.py", "content": body}]}


def planner() -> Model:
    return scripted_model([PLAN], name="research-planner")


def coder() -> Model:
    return scripted_model([code_for], name="research-coder")


def models(**overrides: Model) -> dict[str, Model]:
    return todo_project.models(planner=planner(), coder=coder()) | overrides


CONFIG = todo_project.CONFIG.replace(
    "tests.scripts.todo_project:planner", "tests.scripts.research_project:planner"
).replace("tests.scripts.todo_project:coder", "tests.scripts.research_project:coder")
