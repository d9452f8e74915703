from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace, confined_path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x.py", "leaves the workspace"),
        ("a/../../x.py", "leaves the workspace"),
        ("/etc/passwd", "is absolute"),
        (".git/config", "not writable"),
        (".forgeline/forgeline.db", "not writable"),
        ("sub/.git/hooks/post-commit", "inside .git/, which is not writable"),
        (".GIT/config", "inside .GIT/, which is not writable"),
        ("pkg/.Forgeline/x", "inside .Forgeline/, which is not writable"),
        ("", "empty path"),
        ("a\x00b", "NUL"),
    ],
)
def test_paths_outside_the_workspace_are_refused(tmp_path: Path, path: str, reason: str) -> None:
    with pytest.raises(WorkspaceError, match=reason):
        confined_path(tmp_path, path)


def test_a_symlink_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside, ws / "link")
    with pytest.raises(WorkspaceError, match="resolves outside"):
        confined_path(ws, "link/x.py")
    assert confined_path(ws, "pkg/mod.py") == (ws / "pkg" / "mod.py").resolve()


async def test_new_workspace_gets_a_repo_with_its_files_committed(tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path / "new")
    ws.path.mkdir()
    (ws.path / "forgeline.toml").write_text("")
    await ws.ensure()
    assert await ws.dirty_files() == []
    assert "forgeline.toml" in await ws.git("ls-files")
    # the event store's folder is never part of the repository
    (ws.path / ".forgeline").mkdir()
    (ws.path / ".forgeline" / "x.db").write_text("x")
    assert await ws.dirty_files() == []


async def test_a_batch_of_writes_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path)
    await ws.ensure()
    with pytest.raises(WorkspaceError):
        ws.write_files([("ok.py", "x = 1\n"), ("../escape.py", "x = 2\n")])
    assert not (tmp_path / "ok.py").exists()
    assert not (tmp_path.parent / "escape.py").exists()


async def test_commit_names_only_real_changes_and_reset_drops_unrecorded_work(
    tmp_path: Path,
) -> None:
    repo = GitWorkspace(tmp_path / "repo")
    await repo.ensure()
    ws, base = await repo.add_worktree("forgeline/t", tmp_path / "tree")
    files = ws.write_files([("a.py", "x = 1\n")])
    first = await ws.commit("add a", files)
    assert first is not None
    assert await ws.commit("nothing", files) is None
    assert "a.py" in await ws.diff(base, first)
    assert len(await ws.diff_sha256(base, first)) == 64
    # work a crash left behind: a commit and a half-written file nobody recorded
    ws.write_files([("b.py", "y = 2\n")])
    await ws.commit("unrecorded", ["b.py"])
    (ws.path / "half.py").write_text("def f(")
    await ws.reset_to("forgeline/t", first)
    assert await ws.head() == first
    assert not (ws.path / "b.py").exists()
    assert not (ws.path / "half.py").exists()
    # the repository's own checkout never moved
    assert await repo.current_branch() == "main"
    assert not (repo.path / "a.py").exists()
