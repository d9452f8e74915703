"""Repositories by name under the workspaces root, and the worktree each task has."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.core.task import TaskState
from forgeline.errors import WorkspaceError
from forgeline.workspace.layout import Workspaces


def test_a_repository_is_named_relative_to_the_root_by_name_or_path(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path)
    assert spaces.name_of("todo") == "todo"
    assert spaces.name_of(tmp_path / "team" / "todo") == "team/todo"
    assert spaces.name_of("team/../todo") == "todo"
    assert spaces.repository("team/todo").path == tmp_path / "team" / "todo"


@pytest.mark.parametrize("given", ["..", "../other", "/etc", ".", ""])
def test_a_repository_outside_the_root_is_refused(tmp_path: Path, given: str) -> None:
    with pytest.raises(WorkspaceError, match="not inside the workspaces root"):
        Workspaces(tmp_path / "root").name_of(given)


def test_a_symlink_that_leads_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(WorkspaceError, match="not inside the workspaces root"):
        Workspaces(tmp_path / "root").name_of("link")


def test_the_worktree_follows_from_the_root_the_repository_and_the_task(tmp_path: Path) -> None:
    state = TaskState(task_id="0123456789ab", repository="team/todo")
    here, there = Workspaces(tmp_path / "a"), Workspaces(tmp_path / "b")
    tail = Path("team/todo/.forgeline/worktrees/0123456789ab")
    assert here.worktree(state).path == tmp_path / "a" / tail
    assert there.worktree(state).path == tmp_path / "b" / tail  # same event, another root
    old = state.model_copy(update={"checkout": "/srv/old/todo"})  # recorded as a path
    assert here.worktree(old).path == Path("/srv/old/todo")
