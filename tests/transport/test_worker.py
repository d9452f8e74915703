"""Work through the broker: real Postgres, RabbitMQ, git and pytest, scripted models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage

from forgeline.core.events import task_stream
from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.transport.execution import BrokerExecution
from forgeline.transport.relay import CHECKPOINT
from tests.scripts import todo_project
from tests.transport.conftest import runtime, settings, until, worker

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


PID_TEST = """import os
import time
from pathlib import Path


def test_waits():
    Path({pidfile!r}).write_text(str(os.getpid()))
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\\nState:\\tZ" not in status.read()
    except FileNotFoundError:
        return False


async def test_a_cancel_recorded_elsewhere_stops_the_stage_and_its_processes(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    pidfile = tmp_path / "pytest.pid"
    waiting = {
        "summary": "tests",
        "files": [{"path": "test_todo.py", "content": PID_TEST.format(pidfile=str(pidfile))}],
    }

    def code(messages: list[ModelMessage]) -> dict[str, Any]:
        return (
            waiting
            if "Implement step [b]" in prompt_text(messages)
            else todo_project.code_for(messages)
        )

    models = todo_project.models(coder=scripted_model([code]))
    config = settings(tmp_path, store_url, broker_url)
    async with worker(config, models=models), runtime(config) as submitter:
        task_id = await submitter.submit(REQUEST, tmp_path / "todo")
        await until(pidfile.exists, 90, "the tester's pytest started")
        pid = int(pidfile.read_text())
        assert _alive(pid)
        await submitter.cancel(task_id)
        # the worker sees the cancel in the store; the spawner kills the run
        await until(lambda: not _alive(pid), 5, "the test run was stopped")
        state = await submitter.state(task_id)
        assert state.status == "cancelled"
        events = await submitter.store.read_stream(task_stream(task_id))
        assert "test.results" not in [e.type for e in events]


async def test_a_resume_queues_the_unrecorded_work_and_nothing_runs_twice(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    config = settings(tmp_path, store_url, broker_url)
    async with runtime(config) as submitter:
        assert isinstance(submitter.execution, BrokerExecution)
        task_id = await submitter.submit(REQUEST, tmp_path / "todo")
        # what `POST /api/tasks/ID/resume` does on a server with a broker
        assert await submitter.execution.resume(task_id) == 1  # the planner's, not yet done
        async with worker(config) as serving:
            state = await asyncio.wait_for(submitter.run_until_settled(task_id), 60)
            assert state.status == "completed", state.failure
        events = await submitter.store.read_stream(task_stream(task_id))
        assert [e.type for e in events] == todo_project.EVENT_CHAIN  # the copy found it done
        assert serving.handled >= 7
