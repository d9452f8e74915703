"""Build a real pipeline (SQLite store, git workspace, real spawner) around scripted models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic_ai.models import Model

from forgeline.config import Settings
from forgeline.core.events import Event
from forgeline.core.task import TaskState
from forgeline.llm.gateway import ModelRegistry
from forgeline.pipeline.base import Services
from forgeline.pipeline.runner import Pipeline, settled
from forgeline.pipeline.workers import WorkerManager
from forgeline.sandbox.local import LocalSpawner
from forgeline.store import SQLiteEventStore
from forgeline.workspace.git import GitWorkspace
from tests.scripts import todo_project


@asynccontextmanager
async def pipeline(
    tmp_path: Path, models: Mapping[str, Model] | None = None, **settings: Any
) -> AsyncIterator[Pipeline]:
    store = SQLiteEventStore(tmp_path / "ws" / ".forgeline" / "forgeline.db")
    await store.open()
    services = Services(
        store=store,
        settings=Settings(**settings),
        spawner=LocalSpawner(),
        models=ModelRegistry(models or todo_project.models()),  # type: ignore[arg-type]
    )
    try:
        yield Pipeline(services)
    finally:
        for process in services.previews.values():
            await process.stop()
        await store.close()


async def run_task(p: Pipeline, request: str, mode: str, workspace: Path) -> tuple[str, TaskState]:
    task_id = await p.submit(request, GitWorkspace(workspace))
    state = await drive(p, task_id, mode)
    return task_id, state


async def drive(p: Pipeline, task_id: str, mode: str) -> TaskState:
    if mode == "sequential":
        return await p.run_sequential(task_id)
    import asyncio

    async with WorkerManager(p):
        for _ in range(600):
            state = await p.state(task_id)
            if settled(state):
                break
            await asyncio.sleep(0.05)
    return await p.state(task_id)


async def task_events(p: Pipeline, task_id: str) -> list[Event]:
    return await p.store.read_stream(f"task-{task_id}")
