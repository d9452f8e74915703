"""What the workspace tests share: spawners that remember what they ran, git helpers."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import NO_MOUNTS, Bind, Mounts, ProcessResult


class RecordingLocal(LocalSpawner):
    """A LocalSpawner that remembers every argv it ran."""

    def __init__(self) -> None:
        super().__init__(kill_grace=1.0)
        self.calls: list[tuple[str, ...]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        self.calls.append(tuple(argv))
        return await super().run(
            argv, cwd=cwd, env=env, mounts=mounts, timeout=timeout, max_output=max_output
        )


class RecordingSandbox(BwrapSandbox):
    """A BwrapSandbox that remembers every argv it ran, and its mounts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[str, ...], tuple[Bind, ...]]] = []
        """Each run's argv and the binds its mounts ask for."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        self.calls.append((tuple(argv), mounts.all_binds()))
        return await super().run(
            argv, cwd=cwd, env=env, mounts=mounts, timeout=timeout, max_output=max_output
        )


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def add_worktree(repo: Path, name: str) -> Path:
    """A task worktree ``name`` of ``repo``, where forgeline puts them."""
    path = repo / ".forgeline" / "worktrees" / name
    git("worktree", "add", "-q", "-b", f"forgeline/{name}", str(path), cwd=repo)
    return path
