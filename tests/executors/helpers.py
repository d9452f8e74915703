"""Helpers for the executor tests: write files, compare a tree with itself."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from forgeline.workspace.git import GitWorkspace

#: The ``make_repo`` fixture: a new repository holding these files in its first commit.
MakeRepo = Callable[[Mapping[str, str]], Awaitable[GitWorkspace]]


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


async def tree(workspace: GitWorkspace) -> tuple[dict[str, str], dict[str, bytes]]:
    """``git status`` and the bytes of every file outside ``.git/``: "exactly as before"."""
    files = {
        p.relative_to(workspace.path).as_posix(): p.read_bytes()
        for p in workspace.path.rglob("*")
        if p.is_file() and p.relative_to(workspace.path).parts[0] != ".git"
    }
    return await workspace.status(), files


def dirs(workspace: GitWorkspace) -> set[str]:
    return {
        p.relative_to(workspace.path).as_posix()
        for p in workspace.path.rglob("*")
        if p.is_dir() and p.relative_to(workspace.path).parts[0] != ".git"
    }
