"""Real git workspaces in temporary directories and the local spawner."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from forgeline.sandbox.local import LocalSpawner
from forgeline.workspace.git import GitWorkspace
from tests.executors.helpers import MakeRepo, write


@pytest.fixture
def spawner() -> LocalSpawner:
    return LocalSpawner(kill_grace=1.0)


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """A new repository at ``tmp_path/ws`` holding ``files`` in its first commit."""

    async def make(files: Mapping[str, str]) -> GitWorkspace:
        root = tmp_path / "ws"
        root.mkdir()
        for rel, text in files.items():
            write(root, rel, text)
        workspace = GitWorkspace(root)
        await workspace.ensure()
        return workspace

    return make
