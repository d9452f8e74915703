"""Tasks through the API: submitted, run by the server's own workers on scripted models,
shown with their plan, agent, tests, review, usage and commits; acted on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import anyio
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tests.api.conftest import Api, open_api, server_settings
from tests.scripts import todo_project
from tests.scripts.todo_project import EVENT_CHAIN

REQUEST = "a todo CLI that stores items in todo.json"


def test_a_submitted_task_runs_to_completion_on_the_servers_workers(api: Api) -> None:
    answer = api.post("/api/tasks", json={"request": REQUEST, "workspace": "todo"})
    assert answer.status_code == 201, answer.text
    task = answer.json()
    assert task["status"] == "running" and task["repository"] == "todo"
    done = api.settle(task["id"])
    assert done["status"] == "completed", done["failure"]
    assert done["agent"] == "default" and done["complexity"] == 5
    assert [i["status"] for i in done["plan"]["items"]] == ["completed", "completed"]
    assert done["tests"]["passed"] == 2 and done["tests"]["ok"]
    assert done["review"]["approved"] is True
    assert {u["role"] for u in done["usage"]} >= {"planner", "architect", "coder", "reviewer"}
    assert any("todo.py" in c["subject"] or "plan" in c["subject"] for c in done["commits"])
    events = api.get("/api/events", params={"task": task["id"], "limit": 1000}).json()["events"]
    assert [e["type"] for e in events if e["stream_id"].startswith("task-")] == EVENT_CHAIN
    listed = api.get("/api/tasks", params={"status": "completed"}).json()
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    assert api.get("/api/tasks", params={"workspace": "other"}).json()["tasks"] == []
    diff = api.get(f"/api/tasks/{task['id']}/diff").json()["diff"]
    assert "+def add(text: str" in diff
    files = {f["path"] for f in api.get(f"/api/tasks/{task['id']}/files").json()}
    assert {"todo.py", "test_todo.py", "plan.yaml"} <= files
    body = api.get(f"/api/tasks/{task['id']}/files/todo.py").json()
    assert body["text"].startswith('"""A todo list') and not body["truncated"]
    archive = api.get(f"/api/tasks/{task['id']}/archive")
    assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"
    # a finished task cannot be cancelled or resumed
    refused = api.post(f"/api/tasks/{task['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert api.post(f"/api/tasks/{task['id']}/resume").status_code == 409


def test_a_resume_that_interrupts_another_resume_logs_no_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # schemathesis found it: each resume re-handles the task's events in the background,
    # and the next resume interrupts that work, which was logged as "resume ... failed"
    calls: list[int] = []

    async def architect(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(len(calls))
        await asyncio.sleep(3600)  # until interrupted
        raise AssertionError("not interrupted")

    models = todo_project.models(architect=FunctionModel(architect, model_name="hanging"))
    for api in open_api(server_settings(tmp_path), models):

        async def reached(n: int) -> None:
            with anyio.fail_after(60):
                while len(calls) < n:  # noqa: ASYNC110
                    await anyio.sleep(0.02)

        task = api.post("/api/tasks", json={"request": REQUEST, "workspace": "todo"}).json()
        api.call(reached, 1)  # the server's architect worker is in the stage
        assert api.post(f"/api/tasks/{task['id']}/resume").status_code == 202
        api.call(reached, 2)  # the first resume's own run of it
        assert api.post(f"/api/tasks/{task['id']}/resume").status_code == 202
        api.call(reached, 3)  # the second resume's, which interrupted the first's
        cancelled = api.post(f"/api/tasks/{task['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == []


def test_work_parked_in_the_dead_letter_queue_shows_with_its_last_error(api: Api) -> None:
    # what a worker of the distributed mode records when a stage failed on every try
    from forgeline.core.events import DEAD_LETTERS_STREAM, NewEvent, WorkDeadLettered

    task = api.post("/api/tasks", json={"request": REQUEST, "workspace": "todo"}).json()
    assert api.get(f"/api/tasks/{task['id']}").json()["parked"] == []
    letter = WorkDeadLettered(
        task_id=task["id"],
        role="planner",
        event_id="e1",
        event_type="spec.derived",
        position=1,
        attempts=3,
        error="RuntimeError: the planner chokes",
        worker="w1",
    )
    event = NewEvent(
        stream_id=DEAD_LETTERS_STREAM, data=letter, correlation_id=task["id"], actor="w1"
    )
    api.call(api.server.runtime.store.append, DEAD_LETTERS_STREAM, [event])
    [parked] = api.get(f"/api/tasks/{task['id']}").json()["parked"]
    assert parked["role"] == "planner" and parked["attempts"] == 3
    assert parked["error"] == "RuntimeError: the planner chokes"
