"""``GitWorkspace.ensure`` never makes a repository inside another (issue 13, finding 2).

With real git: a bare repository got ``git init`` inside it and its internals committed;
a subdirectory of a repository got a nested ``.git`` and the user's uncommitted edit
committed as "initial commit". Both are refused now, touching nothing, with the fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@x", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a committed ``src/app.py`` and an uncommitted edit to it."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("A = 1\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "mine")
    (root / "src" / "app.py").write_text("A = 2  # work in progress\n")
    return root


async def test_a_bare_repository_is_refused_untouched(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    before = listing(bare)
    with pytest.raises(WorkspaceError, match="bare git repository") as info:
        await GitWorkspace(bare).ensure()
    assert f"git clone {bare} DIR, then --workspace DIR" in str(info.value)
    assert listing(bare) == before


async def test_a_git_directory_is_refused(repo: Path) -> None:
    before = listing(repo / ".git")
    with pytest.raises(WorkspaceError, match=r"inside a \.git directory"):
        await GitWorkspace(repo / ".git").ensure()
    assert listing(repo / ".git") == before


async def test_a_subdirectory_is_refused_naming_the_repository(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(WorkspaceError) as info:
        await GitWorkspace(repo / "src").ensure()
    assert f"is inside the git repository {repo}" in str(info.value)
    assert f"--workspace {repo}" in str(info.value)
    assert not (repo / "src" / ".git").exists()
    assert git(repo, "rev-parse", "HEAD") == head, "nothing committed"
    assert git(repo, "status", "--porcelain") == " M src/app.py\n", "the edit is the user's"


async def test_a_new_directory_inside_a_repository_is_not_created(repo: Path) -> None:
    with pytest.raises(WorkspaceError, match="never creates one inside another"):
        await GitWorkspace(repo / "todo" / "app").ensure()
    assert not (repo / "todo").exists()


async def test_the_top_level_and_a_linked_worktree_are_used_as_they_are(
    repo: Path, tmp_path: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    await GitWorkspace(repo).ensure()
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == " M src/app.py\n"
    # A linked worktree has a .git file, not a directory: its ignore rules go to the
    # repository's common directory (this raised NotADirectoryError before).
    git(repo, "worktree", "add", "-q", "-b", "other", str(tmp_path / "linked"))
    await GitWorkspace(tmp_path / "linked").ensure()
    assert ".forgeline/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()


async def test_a_new_directory_outside_any_repository_gets_its_own(tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path / "todo")
    await ws.ensure()
    assert (tmp_path / "todo" / ".git").is_dir()
    assert "forgeline: initial commit" in await ws.git("log", "--format=%s")


async def test_a_file_as_workspace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(WorkspaceError, match="is a file"):
        await GitWorkspace(tmp_path / "notes.txt").ensure()
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
