"""The command line's answers to bad input: a clear message, exit 2, nothing lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app
from forgeline.store import SQLiteEventStore
from tests.scripts.todo_project import CONFIG, PLAN

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "forgeline.toml").write_text(CONFIG)
    return path


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in (
        "run",
        "tasks",
        "status",
        "events",
        "answer",
        "approve",
        "usage",
        "cancel",
        "resume",
        "stop",
    ):
        assert command in result.output


def test_an_empty_request_is_refused_before_anything_is_created(ws: Path) -> None:
    result = invoke("run", "   ", "--workspace", str(ws))
    assert result.exit_code == 2
    assert "the request is empty" in result.output
    assert not (ws / ".git").exists()


async def _empty_store(ws: Path) -> None:
    async with SQLiteEventStore(ws / ".forgeline" / "forgeline.db"):
        pass


@pytest.mark.parametrize("command", ["status", "events", "cancel", "resume", "stop"])
def test_an_unknown_task_id_says_how_to_find_one(ws: Path, command: str) -> None:
    asyncio.run(_empty_store(ws))
    result = invoke(command, "nope", "--workspace", str(ws))
    assert result.exit_code == 2
    assert "no task 'nope'" in result.output
    assert "forgeline tasks" in result.output


@pytest.mark.parametrize("command", ["tasks", "status", "events", "usage", "cancel", "stop"])
def test_a_read_command_where_nothing_was_run_creates_nothing(ws: Path, command: str) -> None:
    args = ("nope",) if command not in ("tasks", "usage") else ()
    for workspace in (ws, ws / "missing"):
        result = invoke(command, *args, "--workspace", str(workspace))
        assert result.exit_code == 2, result.output
        assert f"no forgeline store at {workspace / '.forgeline' / 'forgeline.db'}" in " ".join(
            result.output.split()
        )
    assert sorted(p.name for p in ws.iterdir()) == ["forgeline.toml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_fix_rounds = [\n", "not valid TOML"),
        ('max_fix_rounds = "many"\n', "max_fix_rounds: Input should be a valid integer"),
        ("colour = 3\n", "colour: Extra inputs are not permitted"),
        ('mode = "parallel"\n', "mode: Input should be 'event' or 'sequential'"),
        ('[models]\ndefault = "nonsense"\n', "has no provider"),
        ('[models]\ndefault = "function:no.such.module:x"\n', "cannot be loaded"),
        ('store = "mysql://x"\n', "unknown store URL"),
    ],
)
def test_malformed_config_names_the_problem(ws: Path, text: str, message: str) -> None:
    (ws / "forgeline.toml").write_text(text)
    command = ("tasks",) if "store" in text else ("run", "todo cli")
    result = invoke(*command, "--workspace", str(ws))
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_with_no_model_configured_the_local_model_is_used_and_checked(ws: Path) -> None:
    # Nothing in [models]: every role runs on local:<local_model>; a name that is not a
    # known local model is refused before anything is created.
    (ws / "forgeline.toml").write_text('local_model = "no-such-model"\n')
    result = invoke("run", "todo cli", "--workspace", str(ws))
    assert result.exit_code == 2
    assert "unknown local model 'no-such-model'" in result.output
    assert "local:qwen2.5-coder-1.5b" in result.output
    assert not (ws / ".git").exists()


def test_a_missing_config_file_is_an_error(ws: Path) -> None:
    result = invoke("tasks", "--workspace", str(ws), "--config", str(ws / "nope.toml"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_uncommitted_changes_in_the_workspace_are_left_alone(ws: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=ws, check=True)
    (ws / "notes.txt").write_text("mine")
    result = invoke("run", "todo cli", "--workspace", str(ws), "--mode", "sequential")
    assert result.exit_code == 0, result.output
    assert "uncommitted change(s)" in result.output
    assert "not part of the task" in result.output
    assert (ws / "notes.txt").read_text() == "mine"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ws, capture_output=True, text=True, check=True
    )
    assert "?? notes.txt" in status.stdout


def test_run_then_read_commands_then_cancel_is_refused_when_done(ws: Path) -> None:
    result = invoke("run", "todo cli", "--workspace", str(ws), "--mode", "sequential")
    assert result.exit_code == 0, result.output
    task_id = result.output.split("task ", 1)[1].split()[0]
    listed = invoke("tasks", "--workspace", str(ws))
    assert task_id in listed.output
    status = invoke("status", task_id, "--workspace", str(ws))
    assert status.exit_code == 0
    assert "phase    done" in status.output
    assert "tests    2 passed" in status.output
    again = invoke("cancel", task_id, "--workspace", str(ws))
    assert again.exit_code == 2
    assert "already completed" in again.output
    nothing = invoke("answer", task_id, "yes", "--workspace", str(ws))
    assert nothing.exit_code == 2
    assert "not waiting for an answer" in nothing.output


def test_a_question_is_asked_and_answer_continues_the_task(ws: Path, tmp_path: Path) -> None:
    plan = {
        "summary": PLAN["summary"],
        "items": [
            {"id": "q", "title": "Where should items be stored?", "kind": "clarification"},
            {**PLAN["items"][0], "depends_on": ["q"]},
            PLAN["items"][1],
        ],
    }
    script = tmp_path / "askfirst.py"
    script.write_text(
        "from forgeline.llm.scripted import scripted_model\n"
        f"import json\nPLAN = json.loads({json.dumps(json.dumps(plan))})\n"
        "def planner():\n    return scripted_model([PLAN])\n"
    )
    (ws / "forgeline.toml").write_text(
        CONFIG.replace("tests.scripts.todo_project:planner", "askfirst:planner")
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        asked = invoke("run", "todo cli", "--workspace", str(ws))
        assert asked.exit_code == 0, asked.output
        assert "Where should items be stored?" in asked.output
        task_id = asked.output.split("task ", 1)[1].split()[0]
        assert "needs_clarification" in invoke("tasks", "--workspace", str(ws)).output
        empty = invoke("answer", task_id, "  ", "--workspace", str(ws))
        assert empty.exit_code == 2
        assert "the answer is empty" in empty.output
        answered = invoke("answer", task_id, "in todo.json", "--workspace", str(ws))
        assert answered.exit_code == 0, answered.output
        assert "completed" in answered.output
    finally:
        sys.path.remove(str(tmp_path))


def test_model_text_is_shown_literally_not_as_markup() -> None:
    from io import StringIO

    from rich.console import Console

    from forgeline.cli.render import print_event
    from forgeline.core.events import Event, TestResults

    event = Event(
        stream_id="task-t",
        data=TestResults(commit="c", passed=1, failed=1, failing=("test_x.py::test_a[bold]",)),
        correlation_id="t",
        actor="tester",
        version=1,
        position=1,
    )
    out = StringIO()
    print_event(Console(file=out, width=200), event)
    assert "test_x.py::test_a[bold]" in out.getvalue()


def test_without_a_sandbox_run_refuses_unless_the_user_opts_in(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forgeline.sandbox.select as select

    monkeypatch.setattr(select, "sandbox_available", lambda: "bwrap is not installed")
    refused = invoke("run", "todo cli", "--workspace", str(ws))
    assert refused.exit_code == 2
    assert "no isolation available (bwrap is not installed)" in refused.output
    assert "--unsafe-no-sandbox" in refused.output
    assert not (ws / ".git").exists()  # refused before anything was created

    allowed = invoke("run", "todo cli", "--workspace", str(ws), "--unsafe-no-sandbox")
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING:" in allowed.output
    assert "NOT sandboxed" in allowed.output

    strict = invoke(
        "run", "todo cli", "--workspace", str(ws), "--unsafe-no-sandbox", "--require-sandbox"
    )
    assert strict.exit_code == 2
    assert "a sandbox is required" in strict.output


async def test_the_sandbox_is_used_when_available(ws: Path) -> None:
    from forgeline.cli.edge import cli_runtime
    from forgeline.sandbox.bwrap import BwrapSandbox

    async with cli_runtime(ws, None, None, agents=True) as runtime:
        assert isinstance(runtime.spawner, BwrapSandbox)


def _task_id(output: str) -> str:
    return output.split("task ", 1)[1].split()[0]


def test_a_budget_pause_then_approve_finishes_and_usage_shows_the_spend(ws: Path) -> None:
    result = invoke(
        "run", "todo cli", "--workspace", str(ws), "--unsafe-no-sandbox", "--budget-tokens", "1"
    )
    assert result.exit_code == 0, result.output
    assert "paused" in result.output and "would cross the task's budget" in result.output
    task = _task_id(result.output)
    assert f"forgeline approve {task}" in result.output

    usage = invoke("usage", task, "--workspace", str(ws))
    assert usage.exit_code == 0, usage.output
    assert "no model calls recorded yet" in usage.output  # paused before the first call

    refused = invoke("approve", task, "--workspace", str(ws))
    assert refused.exit_code == 2
    assert "--budget-tokens" in refused.output

    done = invoke(
        "approve", task, "--budget-tokens", "100000", "--workspace", str(ws), "--unsafe-no-sandbox"
    )
    assert done.exit_code == 0, done.output
    assert "completed" in done.output
    after = invoke("usage", "--workspace", str(ws))
    for role, model in (("planner", "todo-planner"), ("reviewer", "todo-reviewer")):
        assert role in after.output and model in after.output


def test_approving_a_task_that_is_not_paused_is_refused(ws: Path) -> None:
    result = invoke("run", "todo cli", "--workspace", str(ws), "--unsafe-no-sandbox")
    assert result.exit_code == 0, result.output
    task = _task_id(result.output)
    again = invoke("approve", task, "--budget-usd", "5", "--workspace", str(ws))
    assert again.exit_code == 2
    assert "not waiting for approval" in again.output
