"""A real runtime (SQLite store, git workspaces, the unsandboxed spawner) around scripted
models, opened through ``forgeline.runtime`` like every entry point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic_ai.models import Model

from forgeline.config import Settings
from forgeline.core.events import Event, task_stream
from forgeline.core.task import TaskState, settled
from forgeline.llm.gateway import ModelRegistry
from forgeline.pipeline.execution import ExecutionFactory
from forgeline.runtime import Runtime, open_runtime
from forgeline.sandbox.local import LocalSpawner
from tests.scripts import todo_project

SETTLE_WITHIN = 120.0
"""Seconds a driven task may take to settle before the test fails (with its events)."""


@asynccontextmanager
async def pipeline(
    tmp_path: Path,
    models: Mapping[str, Model] | None = None,
    *,
    execution: ExecutionFactory | None = None,
    agents: bool = True,
    **settings: Any,
) -> AsyncIterator[Runtime]:
    """A runtime whose workspaces root is ``tmp_path`` (repositories ``tmp_path/<name>``)
    and whose store is ``tmp_path/ws/.forgeline/forgeline.db``; web previews it started
    are stopped when it closes. ``agents=False``: one that only reads and records (no
    models), as ``forgeline status`` opens it."""
    store = tmp_path / "ws" / ".forgeline" / "forgeline.db"
    config = Settings(workspaces_root=tmp_path, store=f"sqlite:///{store}", **settings)
    registry = ModelRegistry(models or todo_project.models())  # type: ignore[arg-type]
    async with open_runtime(
        config,
        agents=agents,
        models=registry if agents else None,
        spawner=LocalSpawner(),
        execution=execution,
    ) as runtime:
        yield runtime


async def run_task(
    runtime: Runtime, request: str, mode: str, workspace: Path
) -> tuple[str, TaskState]:
    task_id = await runtime.submit(request, workspace)
    return task_id, await drive(runtime, task_id, mode)


async def drive(runtime: Runtime, task_id: str, mode: str) -> TaskState:
    """Run the task in ``mode`` until it is settled; fail, naming what was recorded, when
    it has not settled within ``SETTLE_WITHIN`` seconds (its stage runs in flight are
    interrupted then, so a hanging stage fails the test too)."""
    assert mode in ("sequential", "event"), mode
    chosen: Literal["sequential", "event"] = "sequential" if mode == "sequential" else "event"
    stop = asyncio.Event()
    stopping: list[asyncio.Task[int]] = []

    def give_up() -> None:
        stop.set()
        stopping.append(asyncio.create_task(runtime.pipeline.interrupt(task_id)))

    timer = asyncio.get_running_loop().call_later(SETTLE_WITHIN, give_up)
    try:
        state = await runtime.run_until_settled(task_id, stop=stop, mode=chosen)
    finally:
        timer.cancel()
        await asyncio.gather(*stopping)
    if not settled(state):
        trail = ", ".join(e.type for e in await task_events(runtime, task_id))
        raise AssertionError(
            f"task {task_id} ({mode} mode) is still {state.status} after {SETTLE_WITHIN:g} s; "
            f"recorded: {trail}"
        )
    return state


async def task_events(runtime: Runtime, task_id: str) -> list[Event]:
    return await runtime.store.read_stream(task_stream(task_id))
