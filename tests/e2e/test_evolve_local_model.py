"""The evolution loop with the real local model: a repository with one obvious bug
(``add`` returns ``a - b`` and its test fails) is fixed in one cycle, on a branch, and
merged into main once approved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.config import Settings
from forgeline.evolve.config import EvolveConfig
from forgeline.evolve.daemon import EvolutionDaemon
from forgeline.evolve.reads import load_changes
from forgeline.llm import local
from forgeline.runtime import open_runtime

FILES = {
    "mathutils.py": "def add(a, b):\n    return a - b\n",
    "test_mathutils.py": (
        "from mathutils import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    ),
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.long_model_run
@pytest.mark.timeout(2400)
async def test_the_local_model_fixes_an_obvious_bug_in_one_cycle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    repo = tmp_path / "calc"
    repo.mkdir()
    for name, text in FILES.items():
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "add, with a bug")
    name = os.environ.get("FORGELINE_TEST_LOCAL_MODEL", local.DEFAULT_LOCAL_MODEL)
    settings = Settings(
        local_model=name,
        mode="sequential",
        max_fix_rounds=2,
        profiles={"small": {"candidates": 2}},
        workspaces_root=tmp_path,
        store=f"sqlite:///{tmp_path / 'events.db'}",
        unsafe_no_sandbox=True,  # the sandbox when it works, else plain processes
        evolve=EvolveConfig(signals=("test", "lint")),
    )
    async with open_runtime(settings, warn=print) as runtime:
        daemon = EvolutionDaemon(runtime, repo, report=print)
        await daemon.run(once=True)
        changes = await load_changes(runtime.store)
        trail = [(c.change_id, c.status, c.summary, c.error_log) for c in changes]
        [change] = [c for c in changes if c.task and c.task.patch_definition.kind == "test"]
        assert change.status == "completed", trail
        assert git(repo, "show", "main:mathutils.py") == FILES["mathutils.py"]  # not merged
        merged = await daemon.merge(change, "person")
    assert merged.status == "merged"
    check = subprocess.run(
        [sys.executable, "-c", "import mathutils; assert mathutils.add(2, 3) == 5"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
