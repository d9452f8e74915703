"""Pattern executors on real workspaces; their changes go through the real patch engine."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from forgeline.executors.patch import apply_change
from forgeline.executors.patterns import (
    PatternContext,
    PatternError,
    PatternResult,
    default_patterns,
)
from forgeline.executors.validation import PythonValidator
from forgeline.runs.testrun import run_pytest
from forgeline.sandbox.local import LocalSpawner
from forgeline.workspace.git import GitWorkspace
from tests.executors.helpers import MakeRepo

PATTERNS = default_patterns()


async def run(name: str, ws: GitWorkspace, **inputs: Any) -> PatternResult:
    return await PATTERNS[name].execute(PatternContext(workspace=ws, inputs=inputs))


def test_every_pattern_publishes_a_json_schema_of_its_inputs() -> None:
    assert set(PATTERNS) == {
        "module_creation",
        "config_setup",
        "automation_enabled_status",
        "implementation_status",
        "research",
    }
    for name, executor in PATTERNS.items():
        schema = executor.get_schema()
        assert schema["title"] == name
        assert schema["type"] == "object"
        assert schema["description"]
    module = PATTERNS["module_creation"].get_schema()
    assert module["required"] == ["module"]
    assert "functions" in module["properties"]
    assert "FunctionSpec" in module["$defs"]


# --------------------------------------------------------------------------- module_creation


async def test_module_creation_writes_a_module_and_tests_that_pass(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo({"README.md": "demo\n"})
    result = await run(
        "module_creation",
        ws,
        module="todo.store",
        docstring='Keeps items in a """JSON""" file, "quoted"',
        imports=["import json"],
        functions=[
            {
                "name": "dumps",
                "args": ["items: list[str]"],
                "returns": "str",
                "docstring": "Serialize the items.",
                "body": "return json.dumps(items)",
            },
            {"name": "load", "args": ["path: str", "strict: bool = True"], "returns": "list[str]"},
        ],
    )
    assert result.change is not None
    paths = [f.path for f in result.change.files]
    assert paths == ["todo/store.py", "todo/__init__.py", "tests/test_todo_store.py"]
    applied = await apply_change(ws, result.change, validate=PythonValidator(spawner))
    assert set(applied.created) == set(paths)

    source = (ws.path / "todo/store.py").read_text()
    assert "def load(path: str, strict: bool = True) -> list[str]:" in source
    assert 'raise NotImplementedError("load is not implemented yet")' in source
    namespace: dict[str, Any] = {}
    exec(compile(source, "store.py", "exec"), namespace)
    assert namespace["__doc__"] == 'Keeps items in a """JSON""" file, "quoted"'
    assert namespace["dumps"].__doc__ == "Serialize the items."
    assert namespace["dumps"](["a"]) == '["a"]'
    with pytest.raises(NotImplementedError):
        namespace["load"]("x")

    report = await run_pytest(ws.path, spawner)
    assert report.ok, report.output
    assert report.passed == 2


async def test_module_creation_in_a_src_layout_keeps_existing_packages(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"src/app/__init__.py": ""})
    result = await run("module_creation", ws, module="app.cli", source_root="src")
    assert result.change is not None
    assert [f.path for f in result.change.files] == ["src/app/cli.py", "tests/test_app_cli.py"]
    assert "from app import cli" in result.change.files[1].content


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"module": "todo.class"}, "'class' is not a Python identifier"),
        ({"module": "m", "functions": [{"name": "f", "args": ["x y"]}]}, "arguments of f"),
        ({"module": "m", "functions": [{"name": "f", "body": "return ("}]}, "the body of f"),
        ({"module": "m", "functions": [{"name": "f"}, {"name": "f"}]}, "defined twice: f"),
        ({"module": "m", "imports": ["x = 1"]}, "not an import statement"),
        ({"module": "m", "tests_dir": "../t"}, "relative directory"),
        ({"module": "existing"}, "existing.py already exists"),
        ({"modul": "m"}, "module: Field required"),
    ],
)
async def test_module_creation_lists_what_is_wrong_with_its_inputs(
    make_repo: MakeRepo, inputs: dict[str, Any], problem: str
) -> None:
    ws = await make_repo({"existing.py": "X = 1\n"})
    executor = PATTERNS["module_creation"]
    context = PatternContext(workspace=ws, inputs=inputs)
    problems = executor.validate_inputs(context)
    assert any(problem in p for p in problems), problems
    with pytest.raises(PatternError, match="invalid inputs"):
        await executor.execute(context)


# --------------------------------------------------------------------------- config_setup

PYPROJECT = """\
# the project's own comment
[project]
name = "demo"  # keep me
dependencies = [
    "httpx",
]

[tool.ruff]
line-length = 80

[tool.ruff.lint]
select = ["E"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


async def test_config_setup_merges_a_tool_table_into_pyproject(make_repo: MakeRepo) -> None:
    ws = await make_repo({"pyproject.toml": PYPROJECT})
    result = await run(
        "config_setup",
        ws,
        file="pyproject.toml",
        tool="ruff",
        values={"line-length": 100, "lint": {"ignore": ["E501"]}},
    )
    assert result.change is not None
    text = result.change.files[0].content
    assert "# the project's own comment" in text
    assert 'name = "demo"  # keep me' in text
    parsed = tomllib.loads(text)
    assert parsed["tool"]["ruff"] == {
        "line-length": 100,
        "lint": {"select": ["E"], "ignore": ["E501"]},
    }
    assert parsed["tool"]["pytest"] == {"ini_options": {"testpaths": ["tests"]}}
    assert parsed["project"]["dependencies"] == ["httpx"]
    await apply_change(ws, result.change, validate=PythonValidator(None))
    again = await run(
        "config_setup", ws, file="pyproject.toml", tool="ruff", values={"line-length": 100}
    )
    assert again.change is None
    assert again.summary == "pyproject.toml is already set up"


async def test_config_setup_adds_only_missing_gitignore_patterns(make_repo: MakeRepo) -> None:
    ws = await make_repo({".gitignore": "# mine\n.venv/\n*.log"})
    result = await run("config_setup", ws, file=".gitignore", patterns=[".venv/", "dist/", "dist/"])
    assert result.change is not None
    assert result.change.files[0].content == "# mine\n.venv/\n*.log\ndist/\n"


async def test_config_setup_creates_then_merges_forgeline_toml(make_repo: MakeRepo) -> None:
    ws = await make_repo({})
    created = await run(
        "config_setup",
        ws,
        file="forgeline.toml",
        values={"mode": "sequential", "models": {"coder": "a"}},
    )
    assert created.change is not None
    assert created.summary == "create forgeline.toml"
    await apply_change(ws, created.change, validate=PythonValidator(None))
    path = ws.path / "forgeline.toml"
    path.write_text("# tuned by hand\n" + path.read_text())
    merged = await run(
        "config_setup",
        ws,
        file="forgeline.toml",
        values={"max_fix_rounds": 5, "models": {"fixer": "b"}},
    )
    assert merged.change is not None
    text = merged.change.files[0].content
    assert text.startswith("# tuned by hand\n")
    assert tomllib.loads(text) == {
        "mode": "sequential",
        "max_fix_rounds": 5,
        "models": {"coder": "a", "fixer": "b"},
    }


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"file": "pyproject.toml", "values": {"a": 1}}, "needs tool"),
        ({"file": ".gitignore", "values": {"a": 1}}, ".gitignore takes patterns"),
        ({"file": "forgeline.toml", "values": {"a": None}}, "TOML has no null"),
        ({"file": "setup.cfg", "values": {"a": 1}}, "file: Input should be"),
        ({"file": ".gitignore", "patterns": ["a\nb"]}, "one non-empty line"),
    ],
)
async def test_config_setup_refuses_inputs_that_do_not_fit_the_file(
    make_repo: MakeRepo, inputs: dict[str, Any], problem: str
) -> None:
    ws = await make_repo({})
    problems = PATTERNS["config_setup"].validate_inputs(PatternContext(ws, inputs))
    assert any(problem in p for p in problems), problems


async def test_config_setup_refuses_a_broken_file_instead_of_overwriting_it(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"pyproject.toml": "[project\nname = 1\n"})
    with pytest.raises(PatternError, match="not valid TOML"):
        await run("config_setup", ws, file="pyproject.toml", tool="x", values={"a": 1})


# --------------------------------------------------------------------------- status patterns


async def test_automation_status_reports_what_is_set_up(make_repo: MakeRepo) -> None:
    ws = await make_repo(
        {
            "app.py": "",
            "tests/test_app.py": "def test_x():\n    pass\n",
            "pkg/thing_test.py": "",
            ".github/workflows/ci.yml": "on: push\n",
            ".pre-commit-config.yaml": "repos: []\n",
            "pyproject.toml": "[tool.ruff]\n[tool.mypy]\nstrict = true\n",
            "Makefile": "test:\n",
            ".gitignore": "ignored/\n",
            "ignored/test_hidden.py": "",
        }
    )
    result = await run("automation_enabled_status", ws)
    assert result.change is None
    assert result.report == {
        "tests": True,
        "test_files": 2,
        "ci": (".github/workflows/ci.yml",),
        "pre_commit": True,
        "forgeline_config": False,
        "tools": ("Makefile", "tool.ruff", "tool.mypy"),
        "enabled": ("tests", "ci", "pre-commit"),
        "missing": ("forgeline",),
    }
    assert result.summary == "enabled: tests, ci, pre-commit; missing: forgeline"
    bare = await PATTERNS["automation_enabled_status"].execute(
        PatternContext(GitWorkspace(ws.path), {})
    )
    assert bare.report is not None
    assert PATTERNS["automation_enabled_status"].validate_inputs(PatternContext(ws, {"x": 1}))


async def test_implementation_status_reports_each_planned_file(make_repo: MakeRepo) -> None:
    ws = await make_repo(
        {
            "src/todo/store.py": "def add():\n    return 1\n",
            "src/todo/cli.py": "def main(:\n",
            "src/todo/untested.py": "X = 1\n",
            "config/app.toml": "a = 1\n",
            "tests/test_store.py": "from todo.store import add\n\ndef test_add():\n    add()\n",
            "tests/test_cli.py": "import todo.cli\n# reads config/app.toml\n",
        }
    )
    result = await run(
        "implementation_status",
        ws,
        files=[
            "src/todo/store.py",
            "src/todo/cli.py",
            "src/todo/untested.py",
            "src/todo/missing.py",
            "config/app.toml",
            "tests/test_store.py",
        ],
    )
    assert result.report is not None
    rows = {row["path"]: row for row in result.report["files"]}
    assert rows["src/todo/store.py"]["tests"] == ("tests/test_store.py",)
    assert rows["src/todo/store.py"]["parses"] is True
    assert rows["src/todo/cli.py"]["parses"] is False
    assert rows["src/todo/cli.py"]["error"].startswith("line 1:")
    assert rows["src/todo/cli.py"]["tests"] == ("tests/test_cli.py",)
    assert rows["src/todo/untested.py"]["tests"] == ()
    assert rows["src/todo/missing.py"] == {
        "path": "src/todo/missing.py",
        "exists": False,
        "parses": None,
        "error": None,
        "is_test": False,
        "tests": (),
    }
    assert rows["config/app.toml"]["tests"] == ("tests/test_cli.py",)
    assert rows["tests/test_store.py"]["is_test"] is True
    # done: store.py, config/app.toml and the test file itself
    assert (result.report["done"], result.report["total"]) == (3, 6)
    assert result.summary == "3 of 6 planned files exist, parse and are tested"
    problems = PATTERNS["implementation_status"].validate_inputs(
        PatternContext(ws, {"files": ["../x.py"]})
    )
    assert problems and "leaves the workspace" in problems[0]
