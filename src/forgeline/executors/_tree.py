"""Snapshots of a working tree's touched paths, and putting them back (the patch engine's
rollback). Private to ``forgeline.executors``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from forgeline.errors import WorkspaceError
from forgeline.workspace.git import PROTECTED, GitWorkspace


@dataclass(frozen=True)
class FileState:
    content: bytes | None  # None: the path did not exist
    mode: int | None


@dataclass(frozen=True)
class Snapshot:
    files: Mapping[str, FileState]
    new_dirs: tuple[str, ...]  # directories the change may create, deepest first
    status: Mapping[str, str]  # git status before the change


def state_of(path: Path) -> FileState:
    if path.is_symlink() or not path.is_file():
        return FileState(None, None)
    return FileState(path.read_bytes(), path.stat().st_mode & 0o7777)


async def take_snapshot(workspace: GitWorkspace, paths: Sequence[str]) -> Snapshot:
    """The state of ``paths`` (relative, already confined) and of ``git status``."""
    root = workspace.path
    files = {rel: state_of(root / rel) for rel in paths}
    new_dirs: set[str] = set()
    for rel in paths:
        parent = PurePosixPath(rel).parent
        while parent != PurePosixPath(".") and not (root / parent).exists():
            new_dirs.add(parent.as_posix())
            parent = parent.parent
    ordered = tuple(sorted(new_dirs, key=lambda d: (-d.count("/"), d)))
    return Snapshot(files, ordered, await workspace.status())


def differences(root: Path, snap: Snapshot) -> tuple[list[str], list[str], list[str]]:
    """(changed, created, deleted) paths between the snapshot and the tree now, sorted."""
    changed: list[str] = []
    created: list[str] = []
    deleted: list[str] = []
    for rel, before in snap.files.items():
        after = state_of(root / rel)
        if after == before:
            continue
        changed.append(rel)
        if before.content is None:
            created.append(rel)
        elif after.content is None:
            deleted.append(rel)
    return sorted(changed), sorted(created), sorted(deleted)


def _put_back(root: Path, rel: str, state: FileState) -> None:
    target = root / rel
    if state.content is None:
        if target.is_symlink() or target.is_file():
            target.unlink()
        return
    if target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)  # a deleted file's directory may be gone
    target.write_bytes(state.content)
    if state.mode is not None:
        os.chmod(target, state.mode)


async def clean_strays(workspace: GitWorkspace, snap: Snapshot) -> list[str]:
    """Undo what changed outside the snapshot's paths since it was taken (a test module
    that wrote files while the tests were collected); return what could not be undone.

    Tracked files whose status changed are checked out; untracked files that were not
    there are removed. Files that were untracked before and ``.git/`` / ``.forgeline/``
    are never touched.
    """
    root = workspace.path
    problems: list[str] = []
    now = await workspace.status()
    tracked = [
        p
        for p, code in now.items()
        if code != "??" and snap.status.get(p) != code and p not in snap.files
    ]
    if tracked:
        try:
            await workspace.git("checkout", "--", *tracked)
        except WorkspaceError as exc:
            problems.append(str(exc))
    for rel, code in now.items():
        parts = PurePosixPath(rel).parts
        if code != "??" or rel in snap.status or rel in snap.files:
            continue
        if not parts or parts[0] in PROTECTED or ".." in parts:
            continue
        try:
            (root / rel).unlink()  # the path itself: a stray symlink goes, not its target
        except OSError as exc:
            problems.append(f"{rel}: {exc}")
    return problems


async def restore(workspace: GitWorkspace, snap: Snapshot) -> list[str]:
    """Put the tree back as the snapshot saw it; return what could not be put back.

    The snapshot's paths get their bytes and mode back (or are removed, with the
    directories created for them); then ``clean_strays``; then ``git status`` must read as
    it did.
    """
    root = workspace.path
    problems: list[str] = []
    for rel, state in snap.files.items():
        try:
            _put_back(root, rel, state)
        except OSError as exc:
            problems.append(f"{rel}: {exc}")
    for rel in snap.new_dirs:
        # Not empty (something else wrote there) or already gone: leave it.
        with contextlib.suppress(OSError):
            (root / rel).rmdir()
    problems += await clean_strays(workspace, snap)
    final = await workspace.status()
    if final != snap.status:
        differ = sorted(
            p for p in set(final) | set(snap.status) if final.get(p) != snap.status.get(p)
        )
        problems.append(f"git status differs from before for {', '.join(differ[:10])}")
    return problems
