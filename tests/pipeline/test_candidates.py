"""Several answers per plan step or fix round (the tier's ``candidates``), each tried in
the worktree, the best kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage

from forgeline.llm.scripted import scripted_model
from tests.llm.test_metering import Counted
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project

REQUEST = "build a todo CLI that stores items in todo.json"
WRONG_TODO_PY = todo_project.TODO_PY.replace(
    'items[number - 1]["done"] = True', 'items[-1]["done"] = True'
)


def todo_file(body: str, summary: str) -> dict[str, Any]:
    return {"summary": summary, "files": [{"path": "todo.py", "content": body}]}


def buggy_coder(messages: list[ModelMessage]) -> dict[str, Any]:
    return todo_project.code_for(messages, buggy=True)


async def test_the_candidate_that_passes_the_tests_is_kept(tmp_path: Path):
    # The first (unsampled) answer is wrong; the second fixes the bug.
    fixer = Counted(
        [
            todo_file(WRONG_TODO_PY, "mark the last item"),
            todo_file(todo_project.TODO_PY, "index from 1"),
            todo_file(WRONG_TODO_PY, "mark the last item"),
        ],
        name="todo-fixer",
    )
    models = todo_project.models(coder=scripted_model([buggy_coder]), fixer=fixer.model)
    async with pipeline(tmp_path, models, profiles={"frontier": {"candidates": 3}}) as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    assert len(fixer.calls) == 3  # three candidates, one fix round
    assert state.fix_rounds == 1
    results = [e.data for e in events if e.type == "test.results"]
    assert [r.ok for r in results] == [False, True]
    assert (tmp_path / "ws" / ".forgeline" / "worktrees" / task_id / "todo.py").read_text() == (
        todo_project.TODO_PY
    )


async def test_with_one_candidate_the_first_answer_is_used(tmp_path: Path):
    fixer = Counted(
        [
            todo_file(WRONG_TODO_PY, "mark the last item"),
            todo_file(todo_project.TODO_PY, "index from 1"),
        ],
        name="todo-fixer",
    )
    models = todo_project.models(coder=scripted_model([buggy_coder]), fixer=fixer.model)
    async with pipeline(
        tmp_path, models, profiles={"frontier": {"candidates": 1}}, max_fix_rounds=2
    ) as p:
        _, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    assert state.fix_rounds == 2  # the wrong answer cost a round
    assert len(fixer.calls) == 2


async def test_without_tests_to_run_the_answer_most_candidates_agree_on_wins(tmp_path: Path):
    other = todo_project.TODO_PY.replace("A todo list", "Another todo list")

    def answers(variant: str):  # type: ignore[no-untyped-def]
        def answer(messages: list[ModelMessage]) -> dict[str, Any]:
            if "Implement step [b]" in " ".join(str(m) for m in messages):
                return todo_project.code_for(messages)
            return todo_file(variant, "todo module")

        return answer

    coder = Counted(
        [answers(todo_project.TODO_PY), answers(other), answers(other), answers(other)],
        name="todo-coder",
    )
    models = todo_project.models(coder=coder.model)
    async with pipeline(tmp_path, models, profiles={"frontier": {"candidates": 3}}) as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    worktree = tmp_path / "ws" / ".forgeline" / "worktrees" / task_id
    assert '"""Another todo list' in (worktree / "todo.py").read_text()


async def test_a_candidate_does_not_win_by_deleting_the_failing_test(tmp_path: Path):
    """Deleting a failing test would leave only passing ones; it counts as failing instead,
    so the task fails honestly rather than completing without its test."""
    kept = todo_project.TEST_TODO_PY.split("def test_done_marks_the_numbered_item")[0]
    fixer = Counted(
        [
            todo_file(todo_project.BUGGY_TODO_PY + "# still wrong\n", "not a fix"),
            {
                "summary": "drop the failing test",
                "files": [{"path": "test_todo.py", "content": kept}],
            },
        ],
        name="todo-fixer",
    )
    models = todo_project.models(coder=scripted_model([buggy_coder]), fixer=fixer.model)
    async with pipeline(
        tmp_path, models, profiles={"frontier": {"candidates": 2}}, max_fix_rounds=1
    ) as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
    assert len(fixer.calls) == 2
    tests = tmp_path / "ws" / ".forgeline" / "worktrees" / task_id / "test_todo.py"
    assert "def test_done_marks_the_numbered_item" in tests.read_text()
    assert state.status == "failed"
