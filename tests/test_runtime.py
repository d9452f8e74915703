"""The runtime every entry point opens: submit apart from running, following a task's
events, stopping a stage in flight, the shutdown, and tasks recorded by an older
forgeline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Literal

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.config import Settings
from forgeline.core.events import TaskInitiated
from forgeline.errors import ConfigError, StoreError, WorkspaceError
from forgeline.llm.scripted import scripted_model
from forgeline.pipeline.execution import SharedWorkers
from forgeline.runtime import open_runtime
from tests.pipeline import harness
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project
from tests.scripts.todo_project import EVENT_CHAIN


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


async def test_submitting_records_the_task_and_running_is_apart(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as rt:
        task_id = await rt.submit("todo cli", tmp_path / "ws")
        # recorded, its worktree made, and nothing run yet
        assert [e.type for e in await task_events(rt, task_id)] == ["task.initiated"]
        state = await rt.state(task_id)
        assert (state.repository, state.checkout) == ("ws", None)
        assert git(rt.worktree(state).path, "branch", "--show-current").strip() == state.branch
        follower = asyncio.create_task(_types(rt.follow(task_id)))
        done = await rt.run_until_settled(task_id, mode="sequential")
        assert done.status == "completed"
        # follow saw every event as it was recorded, and stopped once the task settled
        assert await follower == EVENT_CHAIN
        # a settled task is not run again
        assert (await rt.run_until_settled(task_id)).version == done.version


async def _types(events):  # type: ignore[no-untyped-def]
    return [event.type async for event in events]


async def test_a_repository_outside_the_root_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "elsewhere"
    async with pipeline(tmp_path / "root") as rt:
        for repository in (outside, "../elsewhere", tmp_path / "root"):
            with pytest.raises(WorkspaceError, match="not inside the workspaces root"):
                await rt.submit("todo cli", repository)
        assert await rt.store.tasks() == []
    assert not outside.exists()


async def test_a_submission_that_cannot_be_recorded_leaves_no_worktree_or_branch(
    tmp_path: Path,
) -> None:
    async with pipeline(tmp_path) as rt:
        await rt.store.close()  # the store is gone: recording fails
        with pytest.raises(StoreError, match="closed"):
            await rt.submit("todo cli", tmp_path / "ws")
    assert git(tmp_path / "ws", "branch", "--format=%(refname:short)").split() == ["main"]
    assert not list((tmp_path / "ws" / ".forgeline" / "worktrees").glob("*"))


async def test_without_a_workspaces_root_the_runtime_says_what_to_set(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'f.db'}")
    with pytest.raises(ConfigError, match="workspaces_root"):
        async with open_runtime(settings, agents=False):
            pass


@pytest.mark.parametrize("mode", ["event", "sequential"])
async def test_cancel_interrupts_the_stage_in_flight_and_nothing_follows(
    tmp_path: Path, mode: Literal["event", "sequential"]
) -> None:
    reached = asyncio.Event()

    async def hang(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        reached.set()
        await asyncio.Event().wait()  # a model call that never answers
        raise AssertionError("unreachable")

    hanging = FunctionModel(hang, model_name="hanging")
    async with pipeline(tmp_path, todo_project.models(architect=hanging)) as rt:
        task_id = await rt.submit("todo cli", tmp_path / "ws")
        running = asyncio.create_task(rt.run_until_settled(task_id, mode=mode))
        await reached.wait()  # the architect's model call is under way
        await rt.cancel(task_id)
        state = await running
        types = [e.type for e in await task_events(rt, task_id)]
        changes = [e.type for e in await rt.store.read_all() if e.type.startswith("change.")]
    assert state.status == "cancelled"
    assert types == ["task.initiated", "plan.created", "task.assigned", "task.cancelled"]
    # the architect's change was opened, and nothing of its run was recorded after
    assert changes[-2:] == ["change.pending", "change.in_progress"]


async def test_a_task_that_never_settles_fails_the_harness_naming_what_was_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "SETTLE_WITHIN", 0.5)
    hanging = todo_project.hanging_model(todo_project.PLAN, tmp_path / "reached")
    async with pipeline(tmp_path, todo_project.models(planner=hanging)) as rt:
        for mode in ("sequential", "event"):
            with pytest.raises(AssertionError, match=r"still running .* task\.initiated$"):
                await run_task(rt, "todo cli", mode, tmp_path / "ws")


async def test_closing_the_runtime_stops_its_previews_and_records_it(tmp_path: Path) -> None:
    plan = {"summary": "web", "items": [{"id": "a", "title": "server", "files": ["app.py"]}]}
    arch = {
        "summary": "stdlib server",
        "decision": "http.server",
        "run": {"kind": "web", "command": ["python", "app.py", "{port}"], "health_path": "/"},
    }
    files = {
        "summary": "server",
        "files": [
            {"path": "app.py", "content": WEB_APP},
            {"path": "test_app.py", "content": "def test_ok():\n    assert True\n"},
        ],
    }
    models = todo_project.models(
        planner=scripted_model([plan]),
        architect=scripted_model([arch]),
        coder=scripted_model([files]),
    )
    async with pipeline(tmp_path, models) as rt:
        task_id, state = await run_task(rt, "a web app", "sequential", tmp_path / "ws")
        assert state.status == "completed" and state.preview_pid is not None
    async with pipeline(tmp_path, agents=False) as rt:
        state = await rt.state(task_id)
        assert state.preview_pid is None
        assert (await task_events(rt, task_id))[-1].type == "preview.stopped"


WEB_APP = """import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


async def test_a_task_recorded_by_an_older_forgeline_is_read_and_continued(
    tmp_path: Path,
) -> None:
    """A store written when ``task.initiated`` named the worktree by its absolute path:
    the payload is upcast on reading, and the task works on in that worktree."""
    async with pipeline(tmp_path) as rt:
        task_id = await rt.submit("todo cli", tmp_path / "ws")
        worktree = rt.worktree(await rt.state(task_id)).path
    v1 = {
        "type": "task.initiated",
        "request": "todo cli",
        "workspace": str(worktree),
        "branch": f"forgeline/{task_id}",
        "base_commit": git(worktree, "rev-parse", "HEAD").strip(),
    }
    db = tmp_path / "ws" / ".forgeline" / "forgeline.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET data = ? WHERE type = 'task.initiated'", [json.dumps(v1)])
    async with pipeline(tmp_path) as rt:  # a fresh store: no cached events
        [initiated] = await task_events(rt, task_id)
        assert isinstance(initiated.data, TaskInitiated)
        assert (initiated.data.repository, initiated.data.checkout) == ("ws", str(worktree))
        state = await rt.run_until_settled(task_id, mode="event")
        assert state.status == "completed", state.failure
        assert rt.worktree(state).path == worktree
        assert "todo.py" in git(worktree, "ls-files")


async def test_a_serving_runtime_works_on_tasks_submitted_by_another_process(
    tmp_path: Path,
) -> None:
    """Submission and execution apart: one runtime only records, another (serving every
    task, as a server would) does the work."""
    async with pipeline(tmp_path, agents=False) as submitter:
        task_id = await submitter.submit("todo cli", "ws")
    async with pipeline(tmp_path, execution=SharedWorkers) as server:
        state = await server.run_until_settled(task_id)
    assert state.status == "completed"


async def test_a_task_is_named_by_its_id_or_a_prefix_only_it_starts_with(tmp_path: Path) -> None:
    from forgeline.errors import InvalidRequestError, TaskNotFoundError

    async with pipeline(tmp_path) as rt:
        # 17 ids of hex digits: two of them start alike, whatever the ids are
        ids = [await rt.submit(f"todo cli {i}", tmp_path / "ws") for i in range(17)]
        for task_id in ids:
            assert await rt.task_id(task_id) == task_id
            shortest = next(
                task_id[:n]
                for n in range(1, 13)
                if sum(other.startswith(task_id[:n]) for other in ids) == 1
            )
            assert await rt.task_id(shortest) == task_id
        shared = next(i[0] for i in ids if sum(o.startswith(i[0]) for o in ids) > 1)
        with pytest.raises(InvalidRequestError, match=f"task id '{shared}' is ambiguous"):
            await rt.task_id(shared)
        for unknown in ("zzz", "", "  "):
            with pytest.raises(TaskNotFoundError):
                await rt.task_id(unknown)
