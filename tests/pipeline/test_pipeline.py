"""The six stages end to end, in-process, with scripted models and real git/pytest."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage

from forgeline.core.changes import fold as fold_change
from forgeline.core.events import TestResults
from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.pipeline.execution import SharedWorkers
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project
from tests.scripts.todo_project import EVENT_CHAIN


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("mode", ["sequential", "event"])
async def test_a_request_goes_through_every_stage(tmp_path: Path, mode: str) -> None:
    ws = tmp_path / "ws"
    async with pipeline(tmp_path) as p:
        task_id, state = await run_task(
            p, "build a todo CLI that stores items in todo.json", mode, ws
        )
        events = await task_events(p, task_id)
        assert [e.type for e in events] == EVENT_CHAIN
        assert state.status == "completed"
        # every event names its cause, all within one correlation
        assert all(e.correlation_id == task_id for e in events)
        assert all(e.causation_id for e in events[1:])
        # the branch holds one commit per changing stage, naming the agent and the event
        # the task worked in its own worktree; the repository's checkout was not touched
        assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
        assert not (ws / "todo.py").exists()
        ws = p.worktree(state).path
        assert ws == tmp_path / "ws" / ".forgeline" / "worktrees" / task_id
        assert state.repository == "ws"  # recorded by name, relative to the root
        assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"forgeline/{task_id}"
        log = git(ws, "log", "--format=%s%n%b", f"{state.base_commit}..HEAD")
        subjects = git(
            ws, "log", "--reverse", "--format=%s", f"{state.base_commit}..HEAD"
        ).splitlines()
        assert [s.split(":")[0] for s in subjects] == [
            "forgeline planner",
            "forgeline architect",
            "forgeline coder",
            "forgeline coder",
        ]
        assert "Event: plan.item.dispatched" in log
        tracked = git(ws, "ls-files").split()
        assert {"plan.yaml", "todo.py", "test_todo.py"} <= set(tracked)
        assert any(name.startswith("docs/adr/0001-") for name in tracked)
        # the tests really ran, in the workspace
        results = [e.data for e in events if isinstance(e.data, TestResults)]
        assert (results[0].passed, results[0].failed) == (2, 0)
        # each changing stage left a completed CTRM change with the diff's hash and commit
        for e in events:
            if e.type in ("plan.created", "architecture.proposed", "plan.item.completed"):
                change_id = f"{task_id}-{e.causation_id[:12]}-{e.actor}"  # type: ignore[index]
                change = fold_change(change_id, await p.store.read_stream(f"change-{change_id}"))
                assert change.status == "completed"
                assert change.commit == getattr(e.data, "commit")
                assert change.diff_sha256 is not None and len(change.diff_sha256) == 64
        # the read models follow
        row = await p.store.task(task_id)
        assert row is not None and (row.status, row.current_phase) == ("completed", "done")
        actors = [r.actor for r in await p.store.agent_events(task_id)]
        assert actors[:5] == ["user", "planner", "planner", "assigner", "architect"]


async def test_both_modes_complete_the_task_with_the_same_events_in_the_same_order(
    tmp_path: Path,
) -> None:
    orders = {}
    for mode in ("sequential", "event"):
        async with pipeline(tmp_path / mode) as p:
            task_id, state = await run_task(p, "todo cli", mode, tmp_path / mode / "ws")
            assert state.status == "completed", (mode, state.failure)
            orders[mode] = [e.type for e in await task_events(p, task_id)]
    assert orders["sequential"] == orders["event"] == EVENT_CHAIN


@pytest.mark.parametrize("mode", ["sequential", "event"])
async def test_failing_tests_get_a_fixer_round(tmp_path: Path, mode: str) -> None:
    models = todo_project.models(
        coder=scripted_model([lambda m: todo_project.code_for(m, buggy=True)])
    )
    async with pipeline(tmp_path, models) as p:
        task_id, state = await run_task(p, "todo cli", mode, tmp_path / "ws")
        types = [e.type for e in await task_events(p, task_id)]
        assert state.status == "completed"
        assert types[types.index("code.pr.opened") :] == [
            "code.pr.opened",
            "test.results",
            "fix.attempt",
            "code.pr.opened",
            "test.results",
            "review.decision",
            "deploy.status",
            "task.completed",
        ]
        first = next(
            e.data for e in await task_events(p, task_id) if isinstance(e.data, TestResults)
        )
        assert first.failed == 1
        assert first.failing == ("test_todo.py::test_done_marks_the_numbered_item",)
        assert state.fix_rounds == 1


async def test_fix_rounds_are_bounded_and_the_failure_says_what_to_do(tmp_path: Path) -> None:
    buggy = [lambda m: todo_project.code_for(m, buggy=True)]
    attempts = iter(range(100))

    def still_buggy(_messages):  # type: ignore[no-untyped-def]
        body = todo_project.BUGGY_TODO_PY + f"\n# attempt {next(attempts)}\n"
        return {"summary": "no", "files": [{"path": "todo.py", "content": body}]}

    models = todo_project.models(coder=scripted_model(buggy), fixer=scripted_model([still_buggy]))
    async with pipeline(tmp_path, models, max_fix_rounds=2) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "failed"
    assert state.fix_rounds == 2
    assert state.failure is not None
    assert "after 2 fix round(s)" in state.failure
    assert "test_done_marks_the_numbered_item" in state.failure
    assert f"forgeline/{task_id}" in state.failure


async def test_a_fix_that_changes_nothing_goes_back_to_the_model(tmp_path: Path) -> None:
    """The 1.5B fixer answered with the failing files as they were: it is told so in the
    same round, and its next answer is the one that lands."""
    same = {
        "summary": "same",
        "files": [{"path": "todo.py", "content": todo_project.BUGGY_TODO_PY}],
    }
    told: list[str] = []

    def echo_then_fix(messages: list[ModelMessage]) -> dict[str, Any]:
        if not told:
            told.append("")
            return same
        told.append(prompt_text(messages))
        return todo_project.fixed(messages)

    models = todo_project.models(
        coder=scripted_model([lambda m: todo_project.code_for(m, buggy=True)]),
        fixer=scripted_model([echo_then_fix]),
    )
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    assert state.fix_rounds == 1
    assert "the change leaves every file as it is, and the tests still fail" in told[1]


async def test_a_fixer_that_only_echoes_the_files_fails_its_round(tmp_path: Path) -> None:
    same = {
        "summary": "same",
        "files": [{"path": "todo.py", "content": todo_project.BUGGY_TODO_PY}],
    }
    models = todo_project.models(
        coder=scripted_model([lambda m: todo_project.code_for(m, buggy=True)]),
        fixer=scripted_model([same]),
    )
    async with pipeline(tmp_path, models, output_retries=1) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "failed"
    assert state.fix_rounds == 0
    assert "the change leaves every file as it is, and the tests still fail" in (
        state.failure or ""
    )


async def test_a_plan_step_an_earlier_step_already_did_completes_without_a_commit(
    tmp_path: Path,
) -> None:
    """Small models plan "create todo.py" and "write its functions" as two steps, and the
    first already writes everything; the second then changes nothing and is done."""
    first, tests = todo_project.PLAN["items"]
    files = [*first["files"], *tests["files"]]  # not one step's files: the planner keeps it
    again = {**first, "id": "a2", "title": "functions", "depends_on": ["b"], "files": files}
    plan = {**todo_project.PLAN, "items": [first, tests, again]}

    def coder(messages):  # type: ignore[no-untyped-def]
        return todo_project.code_for(messages)  # step a2 gets todo.py as step a wrote it

    models = todo_project.models(planner=scripted_model([plan]), coder=scripted_model([coder]))
    async with pipeline(tmp_path, models) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    done = {e.data.item_id: e.data for e in events if e.type == "plan.item.completed"}
    assert done["a2"].commit == done["a2"].parent  # nothing to commit
    assert done["a2"].files == ()


async def test_a_new_file_the_model_puts_elsewhere_goes_to_the_planned_path(
    tmp_path: Path,
) -> None:
    """Asked for todo.py, the model writes src/todo.py and tests/test_todo.py; the tests
    would then not import the module. Both land where the plan put them."""

    def coder(messages):  # type: ignore[no-untyped-def]
        answer = todo_project.code_for(messages)
        moved = [
            {**f, "path": f"{'tests' if 'test' in f['path'] else 'src'}/{f['path']}"}
            for f in answer["files"]
        ]
        return {**answer, "files": moved}

    models = todo_project.models(coder=scripted_model([coder]))
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    worktree = p.worktree(state).path
    assert (worktree / "todo.py").is_file() and (worktree / "test_todo.py").is_file()
    assert not (worktree / "src").exists() and not (worktree / "tests").exists()


async def test_a_step_that_skips_its_new_file_is_asked_for_it(tmp_path: Path) -> None:
    """The test step answers with todo.py again (no change at all); the step must create
    test_todo.py, so the model is told so instead of the step counting as done."""
    from forgeline.llm.scripted import prompt_text

    asked: list[str] = []

    def coder(messages):  # type: ignore[no-untyped-def]
        text = prompt_text(messages)
        if "Implement step [b]" in text and not asked:
            asked.append(text)
            return todo_project.code_for([])  # todo.py as step a wrote it
        if "Implement step [b]" in text:
            asked.append(text)
        return todo_project.code_for(messages)

    models = todo_project.models(coder=scripted_model([coder]))
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    assert len(asked) == 2
    assert "this step creates test_todo.py" in asked[1]
    assert (p.worktree(state).path / "test_todo.py").is_file()


async def test_a_plan_item_naming_a_pattern_runs_it_without_a_model(tmp_path: Path) -> None:
    plan = {
        "summary": "todo",
        "items": [
            {
                "id": "g",
                "title": "ignore the data file",
                "kind": "tool_call",
                "description": "pattern:config_setup\n"
                '{"file": ".gitignore", "patterns": ["todo.json"]}',
            },
            *[
                {**i, "depends_on": ["g", *i.get("depends_on", [])]}
                for i in todo_project.PLAN["items"]
            ],
        ],
    }
    models = todo_project.models(planner=scripted_model([plan]))
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        assert state.status == "completed", state.failure
        assert "todo.json" in (p.worktree(state).path / ".gitignore").read_text().splitlines()
        subjects = git(p.worktree(state).path, "log", "--format=%s", f"{state.base_commit}..HEAD")
        assert "[config_setup]" in subjects


async def test_requested_changes_go_back_to_the_coder(tmp_path: Path) -> None:
    review = scripted_model(
        [{"approved": False, "comments": ["add a docstring to test_todo.py"]}, todo_project.APPROVE]
    )

    def coder(messages):  # type: ignore[no-untyped-def]
        from forgeline.llm.scripted import prompt_text

        if "The reviewer requests" in prompt_text(messages):
            body = '"""Tests for the todo CLI."""\n' + todo_project.TEST_TODO_PY
            return {"summary": "docstring", "files": [{"path": "test_todo.py", "content": body}]}
        return todo_project.code_for(messages)

    models = todo_project.models(reviewer=review, coder=scripted_model([coder]))
    async with pipeline(tmp_path, models) as p:
        task_id, state = await run_task(p, "todo cli", "event", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed"
    assert state.review_rounds == 1
    prs = [e for e in events if e.type == "code.pr.opened"]
    assert [getattr(e.data, "reason") for e in prs] == ["plan", "review"]
    assert [e.actor for e in prs] == ["orchestrator", "coder"]
    assert (p.worktree(state).path / "test_todo.py").read_text().startswith('"""Tests for the')


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        {"summary": "x", "files": [{"path": "../outside.py", "content": "x = 1\n"}]},
        {"summary": "x", "files": [{"path": "/etc/passwd", "content": "x\n"}]},
        {"summary": "x", "files": []},
        {"summary": "x", "files": [{"path": "todo.py", "content": "def broken(:\n"}]},
    ],
    ids=["invalid-json", "dotdot", "absolute", "empty", "syntax-error"],
)
async def test_bad_model_output_is_retried_then_accepted(tmp_path: Path, bad: object) -> None:
    answers = [bad, lambda m: todo_project.code_for(m)]
    models = todo_project.models(coder=scripted_model(answers))  # type: ignore[list-item]
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed"
    assert not (tmp_path / "outside.py").exists()


async def test_output_that_stays_bad_fails_the_stage_and_keeps_the_record(tmp_path: Path) -> None:
    bad = {"summary": "x", "files": [{"path": "../../escape.py", "content": "x = 1\n"}]}
    models = todo_project.models(coder=scripted_model([bad]))
    async with pipeline(tmp_path, models, output_retries=2) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
        assert state.status == "failed"
        assert [e.type for e in events][-2:] == ["stage.failed", "task.failed"]
        assert [e.type for e in events][:6] == [
            "task.initiated",
            "spec.derived",
            "plan.created",
            "task.assigned",
            "architecture.proposed",
            "plan.item.dispatched",
        ]
        assert state.failure is not None
        assert "coder failed" in state.failure and "leaves the workspace" in state.failure
        # the coder's change is recorded as failed, with the error log
        failed = [e for e in await p.store.read_all() if e.type == "change.failed"]
        assert len(failed) == 1
    assert not (tmp_path / "escape.py").exists()


async def test_a_clarification_pauses_the_task_until_answered(tmp_path: Path) -> None:
    plan = {
        "summary": "todo",
        "items": [
            {"id": "q", "title": "Which file should hold the items?", "kind": "clarification"},
            *todo_project.PLAN["items"],
        ],
    }
    plan["items"][1] = {**plan["items"][1], "depends_on": ["q"]}
    models = todo_project.models(planner=scripted_model([plan]))
    async with pipeline(tmp_path, models) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        assert state.status == "needs_clarification"
        from datetime import UTC, datetime

        from forgeline.core.task import Answer, decide

        await p.store.append(
            f"task-{task_id}", decide(state, Answer(answer="todo.json", at=datetime.now(UTC)))
        )
        state = await p.run_until_settled(task_id, mode="sequential")
        assert state.status == "completed"
        assert state.items["q"].answer == "todo.json"


async def test_cancel_stops_the_task(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        task_id = await p.submit("todo cli", tmp_path / "ws")
        await p.cancel(task_id)
        state = await p.run_until_settled(task_id, mode="sequential")
        assert state.status == "cancelled"
        assert [e.type for e in await task_events(p, task_id)] == [
            "task.initiated",
            "task.cancelled",
        ]


WEB_APP = """import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else b"hello"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

WEB_TEST = """import app_module_exists


def test_exists():
    assert app_module_exists.OK
"""


async def test_a_web_app_is_deployed_to_a_preview_url_and_stopped(tmp_path: Path) -> None:
    import urllib.request

    plan = {"summary": "web", "items": [{"id": "a", "title": "server", "files": ["app.py"]}]}
    arch = {
        "summary": "stdlib server",
        "decision": "http.server",
        "run": {"kind": "web", "command": ["python", "app.py", "{port}"], "health_path": "/health"},
    }
    files = {
        "summary": "server",
        "files": [
            {"path": "app.py", "content": WEB_APP},
            {"path": "app_module_exists.py", "content": "OK = True\n"},
            {"path": "test_app.py", "content": WEB_TEST},
        ],
    }
    models = todo_project.models(
        planner=scripted_model([plan]),
        architect=scripted_model([arch]),
        coder=scripted_model([files]),
    )
    async with pipeline(tmp_path, models) as p:
        task_id, state = await run_task(p, "a web app", "sequential", tmp_path / "ws")
        assert state.status == "completed"
        assert state.deploy is not None and state.deploy.url is not None
        with urllib.request.urlopen(state.deploy.url + "/health", timeout=5) as response:
            assert response.read() == b"ok"
        pid = await p.stop_preview(task_id)
        assert pid == state.deploy.pid
        assert [e.type for e in await task_events(p, task_id)][-1] == "preview.stopped"
        with pytest.raises(OSError):
            urllib.request.urlopen(state.deploy.url + "/health", timeout=2)


async def test_workers_for_one_task_leave_other_tasks_alone(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        other = await p.submit("another request", tmp_path / "other")
        mine = await p.submit("todo cli", tmp_path / "ws")
        assert (await p.run_until_settled(mine, mode="event")).status == "completed"
        assert [e.type for e in await task_events(p, other)] == ["task.initiated"]
        # and a later run for the other task starts from its own beginning
        assert (await p.run_until_settled(other, mode="event")).status == "completed"


async def test_shared_workers_run_parallel_tasks_on_one_repository_in_separate_worktrees(
    tmp_path: Path,
) -> None:
    """The serving execution (a server's): one set of workers for every task."""
    async with pipeline(tmp_path, execution=SharedWorkers) as p:
        first = await p.submit("todo cli", tmp_path / "ws")
        second = await p.submit("todo cli again", "ws")  # by name, under the root
        states = await asyncio.gather(p.run_until_settled(first), p.run_until_settled(second))
        assert [s.status for s in states] == ["completed", "completed"]
        trees = [p.worktree(state).path for state in states]
        assert trees[0] != trees[1]
        for state, tree in zip(states, trees, strict=True):
            assert git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip() == state.branch
        branches = git(tmp_path / "ws", "branch", "--format=%(refname:short)").split()
        assert sorted(branches) == sorted(["main", f"forgeline/{first}", f"forgeline/{second}"])
