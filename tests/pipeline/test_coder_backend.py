"""``[coder] backend`` picks a coding CLI: a stand-in CLI writes the code, the patch engine
lands it, and the CLI's secrets reach the CLI and nothing else."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import Model

from forgeline.config import CoderConfig, load_settings
from forgeline.core.events import PlanItemCompleted
from forgeline.executors.adapters import (
    AdapterRequest,
    AiderAdapter,
    ClaudeAdapter,
    adapter_for,
)
from forgeline.llm.scripted import scripted_model
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project

# Parses the arguments like the real aider, writes the step's file, reports what it saw.
AIDER = """\
#!{python}
import argparse, json, os, sys
from pathlib import Path

parser = argparse.ArgumentParser(prog="aider")
for flag in ("--yes-always", "--no-auto-commits", "--no-gitignore", "--no-check-update",
             "--no-pretty", "--no-stream"):
    parser.add_argument(flag, action="store_true")
parser.add_argument("--model")
parser.add_argument("--message", required=True)
parser.add_argument("--edit-format")
parser.add_argument("files", nargs="*")
args = parser.parse_args()
assert args.yes_always and args.no_auto_commits, "aider would ask questions"
log = Path({log!r})
with log.open("a") as out:
    out.write(json.dumps(dict(model=args.model, edit_format=args.edit_format, files=args.files,
                              token=os.environ.get("CLI_TOKEN"),
                              other=os.environ.get("OTHER_SECRET"),
                              step_b="Implement step [b]" in args.message)) + "\\n")
Path(".aider.chat.history.md").write_text("scratch")
if "Implement step [b]" in args.message:
    Path("test_todo.py").write_text({test!r})
else:
    Path("todo.py").write_text({todo!r})
print("aider: done")
"""


def make_aider(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "aider.log"
    path = tmp_path / "bin" / "my-aider"
    path.parent.mkdir()
    path.write_text(
        AIDER.format(
            python=sys.executable,
            log=str(log),
            test=todo_project.TEST_TODO_PY,
            todo=todo_project.TODO_PY,
        )
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path, log


def forbidden_coder() -> Model:
    def never(_messages: list[ModelMessage]) -> dict[str, Any]:
        raise AssertionError("the coder's model must not be asked")

    return scripted_model([never])


@pytest.mark.parametrize("mode", ["sequential", "event"])
async def test_a_cli_back_end_chosen_by_config_writes_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    executable, log = make_aider(tmp_path)
    monkeypatch.setenv("OTHER_SECRET", "not-for-the-cli")
    coder = {
        "backend": "aider",
        "executable": str(executable),
        "model": "sonnet",
        "args": ["--edit-format", "diff"],
        "env": {"CLI_TOKEN": "s3cret-token"},
        "requires_key": False,
    }
    models = todo_project.models(coder=forbidden_coder())
    async with pipeline(tmp_path, models, coder=coder) as p:
        task_id, state = await run_task(p, "todo cli", mode, tmp_path / "ws")
        events = await task_events(p, task_id)
        everything = await p.store.read_all()
    assert state.status == "completed", state.failure
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["step_b"] for r in runs) == [False, True]
    assert all(r["model"] == "sonnet" and r["edit_format"] == "diff" for r in runs)
    assert sorted(tuple(r["files"]) for r in runs) == [("test_todo.py",), ("todo.py",)]
    assert all(r["token"] == "s3cret-token" and r["other"] is None for r in runs)
    done = [e.data for e in events if isinstance(e.data, PlanItemCompleted)]
    assert sorted(f for d in done for f in d.files) == ["test_todo.py", "todo.py"]
    workspace = p.worktree(state).path
    assert (workspace / "todo.py").read_text() == todo_project.TODO_PY
    assert not (workspace / ".aider.chat.history.md").exists()  # the CLI's scratch is no change
    # the secret from the configuration is in no event
    assert not any("s3cret-token" in e.model_dump_json() for e in everything)


async def test_a_cli_back_end_that_cannot_run_fails_the_stage_clearly(tmp_path: Path) -> None:
    coder = {"backend": "codex", "executable": str(tmp_path / "no-such-codex")}
    async with pipeline(tmp_path, coder=coder) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "failed"
    assert "coder back-end codex: codex: executable" in (state.failure or "")
    assert "not found on PATH" in (state.failure or "")


def test_the_coder_table_comes_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "forgeline.toml").write_text(
        '[coder]\nbackend = "claude"\nmodel = "opus"\nargs = ["--max-turns", "5"]\n'
        'env = { CLAUDE_CODE_OAUTH_TOKEN = "tok-in-file" }\n'
    )
    monkeypatch.setenv("FORGELINE_CODER__EDIT_FORMAT", "diff")
    settings = load_settings(tmp_path)
    config = settings.coder
    assert (config.backend, config.edit_format, config.model) == ("claude", "diff", "opus")
    assert "tok-in-file" not in repr(settings) and "tok-in-file" not in str(config)
    assert "tok-in-file" not in json.dumps(settings.model_dump(mode="json"))
    adapter = adapter_for(config, environ={"PATH": "/nowhere"})
    assert isinstance(adapter, ClaudeAdapter)
    assert adapter.child_env()["CLAUDE_CODE_OAUTH_TOKEN"] == "tok-in-file"
    assert "--max-turns" in adapter.arguments(AdapterRequest(prompt="p"))
    assert "tok-in-file" not in repr(adapter)
    assert isinstance(adapter_for(CoderConfig(backend="aider")), AiderAdapter)
