"""Fixtures of the workspace tests: a repository, a task worktree, a recording sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.sandbox.bwrap import sandbox_available
from tests.workspace.helpers import RecordingSandbox, add_worktree, git


@pytest.fixture
def sandbox() -> RecordingSandbox:
    reason = sandbox_available()
    if reason is not None:
        pytest.fail(
            f"the bubblewrap sandbox is not usable on this machine: {reason}", pytrace=False
        )
    return RecordingSandbox()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    identity = ("-c", "user.name=t", "-c", "user.email=t@t")
    git(*identity, "commit", "-q", "--allow-empty", "-m", "init", cwd=path)
    return path


@pytest.fixture
def worktree(repo: Path) -> Path:
    return add_worktree(repo, "t1")
