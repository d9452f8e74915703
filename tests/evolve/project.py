"""A small repository with one bug (``add`` returns ``a - b``, and its test fails) and one
lint finding (an unused import), and scripted models that fix either, for the evolution
loop's tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import Model

from forgeline.llm.scripted import prompt_text, scripted_model

CALC = "def add(a, b):\n    return a - b\n"
FIXED_CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = (
    "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_add_zero():\n    assert add(4, 0) == 4\n"
)
UTIL = 'import os\n\n\ndef greet(name):\n    return f"hello {name}"\n'
FIXED_UTIL = 'def greet(name):\n    return f"hello {name}"\n'
TEST_UTIL = (
    'from util import greet\n\n\ndef test_greet():\n    assert greet("ada") == "hello ada"\n'
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=repo,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode()


def make_repository(root: Path, name: str = "proj", **extra: str) -> Path:
    """A git repository ``root/name`` on ``main`` with the bug, the finding and ``extra``
    files (path: content), all committed."""
    repo = root / name
    repo.mkdir(parents=True)
    files = {
        "calc.py": CALC,
        "test_calc.py": TEST_CALC,
        "util.py": UTIL,
        "test_util.py": TEST_UTIL,
    } | extra
    for path, content in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(content)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    return repo


def _about_lint(text: str) -> bool:
    return "lint findings" in text


def plan(messages: list[ModelMessage]) -> dict[str, Any]:
    path = "util.py" if _about_lint(prompt_text(messages)) else "calc.py"
    return {
        "summary": f"fix {path}",
        "items": [{"id": "a", "title": f"fix {path}", "files": [path]}],
    }


ARCHITECTURE = {
    "summary": "Keep the modules as they are; fix the one in question.",
    "decision": "## Decision\nA minimal change.\n",
    "run": {"kind": "library"},
}


def code(messages: list[ModelMessage], calc: str = FIXED_CALC) -> dict[str, Any]:
    if _about_lint(prompt_text(messages)):
        return {
            "summary": "drop the unused import",
            "files": [{"path": "util.py", "content": FIXED_UTIL}],
        }
    return {"summary": "add adds", "files": [{"path": "calc.py", "content": calc}]}


def fix(messages: list[ModelMessage], calc: str = FIXED_CALC) -> dict[str, Any]:
    """The fixer repairs ``add`` (a lint change's tests fail on the bug it started from)."""
    return {"summary": "add adds", "files": [{"path": "calc.py", "content": calc}]}


def models(*, calc: str = FIXED_CALC) -> dict[str, Model]:
    """Every role's scripted model; ``calc``: what the coder and fixer write for calc.py."""
    return {
        "planner": scripted_model([plan], name="evolve-planner"),
        "architect": scripted_model([ARCHITECTURE], name="evolve-architect"),
        "coder": scripted_model([lambda m: code(m, calc)], name="evolve-coder"),
        "fixer": scripted_model([lambda m: fix(m, calc)], name="evolve-fixer"),
        "reviewer": scripted_model([{"approved": True, "comments": []}], name="evolve-reviewer"),
    }


# Zero-argument factories, for a forgeline.toml (``function:tests.evolve.project:coder``).


def planner() -> Model:
    return models()["planner"]


def architect() -> Model:
    return models()["architect"]


def coder() -> Model:
    return models()["coder"]


def fixer() -> Model:
    return models()["fixer"]


def reviewer() -> Model:
    return models()["reviewer"]


CONFIG = """
[models]
planner = "function:tests.evolve.project:planner"
architect = "function:tests.evolve.project:architect"
coder = "function:tests.evolve.project:coder"
fixer = "function:tests.evolve.project:fixer"
reviewer = "function:tests.evolve.project:reviewer"

[evolve]
signals = ["test"]
interval = "10m"
"""


def plan_with_tests(messages: list[ModelMessage]) -> dict[str, Any]:
    return {
        "summary": "fix calc.py",
        "items": [{"id": "a", "title": "fix add", "files": ["calc.py", "test_calc.py"]}],
    }


def code_dropping_a_test(messages: list[ModelMessage]) -> dict[str, Any]:
    """Fixes ``add`` and, on the way, deletes a test that passed."""
    kept = TEST_CALC.split("\n\n\ndef test_add_zero")[0] + "\n"
    return {
        "summary": "add adds",
        "files": [
            {"path": "calc.py", "content": FIXED_CALC},
            {"path": "test_calc.py", "content": kept},
        ],
    }
