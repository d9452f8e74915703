"""Work through the broker: real Postgres, RabbitMQ, git and pytest, scripted models."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forgeline.core.events import task_stream
from forgeline.transport.relay import CHECKPOINT
from tests.scripts import todo_project
from tests.transport.conftest import runtime, settings, worker

REQUEST = "a todo CLI storing items in todo.json"


async def test_a_task_runs_on_a_worker_and_the_submitter_follows_it(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    config = settings(tmp_path, store_url, broker_url)
    async with worker(config) as serving, runtime(config) as submitter:
        task_id = await submitter.submit(REQUEST, tmp_path / "todo")
        state = await asyncio.wait_for(submitter.run_until_settled(task_id), 60)
        assert state.status == "completed", state.failure
        events = await submitter.store.read_stream(task_stream(task_id))
        assert [e.type for e in events] == todo_project.EVENT_CHAIN
        assert serving.handled >= 6
    # the relay recorded how far it published: past the last event a stage acts on
    async with runtime(config) as reader:
        review = next(e for e in events if e.type == "review.decision")
        assert await reader.store.get_checkpoint(CHECKPOINT) >= review.position
