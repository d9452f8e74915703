"""The offline default end to end: no model configured, the real local model builds the
README's example (a todo CLI that keeps its items in a JSON file), and the CLI it builds
does what the request says when a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.config import Settings
from forgeline.core.events import CandidateChosen, SpecDerived
from forgeline.llm import local
from forgeline.runtime import open_runtime

#: The README's first line.
REQUEST = (
    "build a todo CLI, todo.py, that keeps its items in todo.json: "
    "`python todo.py add TEXT...` adds an item, `python todo.py list` prints them"
)


def readme_request() -> str:
    """The request of the README's first command, as the README writes it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "forgeline run '" in line)
    return line.split("forgeline run '", 1)[1].split("'", 1)[0]


def test_the_request_is_the_readmes() -> None:
    assert readme_request() == REQUEST


def use(todo: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(todo), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.timeout(3600)
async def test_the_local_model_builds_the_readmes_todo_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    name = os.environ.get("FORGELINE_TEST_LOCAL_MODEL", local.DEFAULT_LOCAL_MODEL)
    settings = Settings(
        local_model=name,
        mode="sequential",
        workspaces_root=tmp_path,
        store=f"sqlite:///{tmp_path / 'events.db'}",
        unsafe_no_sandbox=True,  # the sandbox when it works, else plain processes
    )
    # The runtime builds the registry (nothing configured: local:<name>, the small tier)
    # and stops the local model's server when it closes.
    async with open_runtime(settings, warn=print) as runtime:
        assert runtime.models.spec("coder") == f"local:{name}"
        task_id = await runtime.submit(REQUEST, "ws")
        state = await runtime.run_until_settled(task_id)
        events = await runtime.store.read_stream(f"task-{task_id}")
        usage = await runtime.store.read_stream(f"usage-{task_id}")
        worktree = runtime.worktree(state).path
    trail = "\n".join(f"{e.actor} {e.type} {e.data!r:.300}" for e in events)
    assert state.status == "completed", f"{state.failure}\n{trail}"
    [spec] = [e.data for e in events if isinstance(e.data, SpecDerived)]
    assert spec.tier == "small" and spec.files == ("todo.py",)
    assert any(isinstance(e.data, CandidateChosen) and e.data.spec_ok for e in events)
    assert all(e.data.cost_usd == 0 for e in usage)  # a local model costs nothing
    # The CLI, used as the request says, outside forgeline, in a directory of its own.
    home = tmp_path / "user"
    home.mkdir()
    todo = home / "todo.py"
    shutil.copyfile(worktree / "todo.py", todo)
    for item in ("milk", "eggs"):
        added = use(todo, "add", item, cwd=home)
        assert added.returncode == 0, added.stderr
    listed = use(todo, "list", cwd=home)
    assert listed.returncode == 0, listed.stderr
    assert "milk" in listed.stdout and "eggs" in listed.stdout
    assert listed.stdout.index("milk") < listed.stdout.index("eggs")
    stored = json.dumps(json.loads((home / "todo.json").read_text()))
    assert "milk" in stored and "eggs" in stored
    # a second process sees the items the first one stored
    assert "milk" in use(todo, "list", cwd=home).stdout
