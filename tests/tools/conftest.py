"""Fixtures of the tool tests: a local HTTP peer and a real SQLite event store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forgeline.core.task import TaskState
from forgeline.store import open_store
from forgeline.store.base import EventStore
from forgeline.workspace.layout import Workspaces
from tests.pipeline import harness
from tests.tools.peers import Peer


@pytest.fixture
def peer() -> Iterator[Peer]:
    with Peer() as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    event_store = open_store(f"sqlite:///{tmp_path / 'forgeline.db'}")
    await event_store.open()
    try:
        yield event_store
    finally:
        await event_store.close()


@dataclass
class FinishedTask:
    store: EventStore
    task_id: str
    workspace: Path
    state: TaskState
    workspaces: Workspaces


@pytest.fixture
async def finished_task(tmp_path: Path) -> AsyncIterator[FinishedTask]:
    """The todo request run through the whole pipeline on scripted models (sequential)."""
    async with harness.pipeline(tmp_path, workspace_venv=False) as pipeline:
        workspace = tmp_path / "ws"
        task_id, state = await harness.run_task(
            pipeline, "build a todo CLI that stores items in todo.json", "sequential", workspace
        )
        assert state.status == "completed", state.failure
        yield FinishedTask(pipeline.store, task_id, workspace, state, pipeline.workspaces)
