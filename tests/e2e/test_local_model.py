"""The offline default end to end: no model configured, the real local model builds a
tiny request through every stage (planner to deployer), and the result really works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.config import Settings
from forgeline.llm import local
from forgeline.runtime import open_runtime

REQUEST = (
    "Create a Python module mathutils.py with a function add(a, b) that returns the sum "
    "of a and b, and a pytest test file test_mathutils.py that tests add."
)


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.timeout(1500)
async def test_the_local_model_builds_a_small_module_end_to_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    name = os.environ.get("FORGELINE_TEST_LOCAL_MODEL", local.DEFAULT_LOCAL_MODEL)
    settings = Settings(
        local_model=name,
        mode="sequential",
        max_fix_rounds=2,
        candidates=2,
        workspaces_root=tmp_path,
        store=f"sqlite:///{tmp_path / 'events.db'}",
        unsafe_no_sandbox=True,  # the sandbox when it works, else plain processes
    )
    # The runtime builds the registry (nothing configured: local:<name>) and stops the
    # local model's server when it closes.
    async with open_runtime(settings, warn=print) as runtime:
        assert runtime.models.spec("coder") == f"local:{name}"
        task_id = await runtime.submit(REQUEST, "ws")
        state = await runtime.run_until_settled(task_id)
        events = await runtime.store.read_stream(f"task-{task_id}")
        usage = await runtime.store.read_stream(f"usage-{task_id}")
        worktree = runtime.worktree(state).path
    trail = "\n".join(f"{e.actor} {e.type} {e.data!r:.300}" for e in events)
    assert state.status == "completed", f"{state.failure}\n{trail}"
    assert {e.data.role for e in usage} >= {"planner", "architect", "coder", "reviewer"}
    assert all(e.data.cost_usd == 0 for e in usage)  # a local model costs nothing
    # The module works when imported, outside forgeline.
    check = subprocess.run(
        [sys.executable, "-c", "import mathutils; assert mathutils.add(2, 3) == 5"],
        cwd=worktree,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
