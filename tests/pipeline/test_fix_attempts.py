"""Every fix round is a ``fix.attempt`` event; the fix rate is read back from the log, and a
round that repeats an earlier one stops the loop as "no progress"."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage

from forgeline.core.events import FixAttempted
from forgeline.core.fixes import attempts_from_log, fix_rate, run_from_log
from forgeline.llm.scripted import prompt_text, scripted_model
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project


def buggy_coder() -> Any:
    return scripted_model([lambda m: todo_project.code_for(m, buggy=True)])


def todo(body: str, summary: str = "try") -> dict[str, Any]:
    return {"summary": summary, "files": [{"path": "todo.py", "content": body}]}


def head(ws: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True)
    return out.stdout.strip()


async def test_a_successful_fix_round_is_recorded_and_counts_as_fixed(tmp_path: Path) -> None:
    async with pipeline(tmp_path, todo_project.models(coder=buggy_coder())) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    [event] = [e for e in events if isinstance(e.data, FixAttempted)]
    attempt = event.data
    assert isinstance(attempt, FixAttempted)
    assert event.actor == "fixer"
    assert (attempt.attempt, attempt.outcome, attempt.backend) == (1, "applied", "llm")
    assert attempt.reason == "index from 1"
    [fix_pr] = [e.data for e in events if e.type == "code.pr.opened" and e.actor == "fixer"]
    assert attempt.commit == getattr(fix_pr, "commit")
    assert attempt.files == ("todo.py",)
    assert attempt.duration_s >= 0
    assert attempt.fingerprint is not None and len(attempt.fingerprint) == 64
    assert attempt.diff_sha256 and attempt.base_diff_sha256
    assert attempt.diff_sha256 != attempt.base_diff_sha256
    # the benchmark's view: the round's tests passed
    [record] = attempts_from_log(events)
    assert (record.attempt, record.outcome) == (1, "tests_pass")
    run = run_from_log(events)
    assert run is not None and run.stopped == "tests_pass" and run.changed == ("todo.py",)
    assert fix_rate([run]) == 1.0


async def test_rounds_that_keep_failing_are_each_recorded(tmp_path: Path) -> None:
    counter = iter(range(100))
    prompts: list[str] = []

    def still_buggy(messages: list[ModelMessage]) -> dict[str, Any]:
        prompts.append(prompt_text(messages))
        return todo(todo_project.BUGGY_TODO_PY + f"\n# attempt {next(counter)}\n")

    models = todo_project.models(coder=buggy_coder(), fixer=scripted_model([still_buggy]))
    async with pipeline(tmp_path, models, max_fix_rounds=2) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "failed"
    recorded = [e.data for e in events if isinstance(e.data, FixAttempted)]
    assert [(a.attempt, a.outcome) for a in recorded] == [(1, "applied"), (2, "applied")]
    assert [a.outcome for a in attempts_from_log(events)] == ["tests_fail", "tests_fail"]
    run = run_from_log(events)
    assert run is not None and run.stopped == "max_attempts"
    assert fix_rate([run]) == 0.0
    # the second round's prompt names the first one
    assert "Earlier fix rounds" not in prompts[0]
    assert "- round 1: applied (todo.py): try; the tests still failed" in prompts[1]


async def test_the_same_fix_twice_stops_as_no_progress(tmp_path: Path) -> None:
    """A proposal identical to the round before leaves every file as it is: it is asked
    afresh, and when the model keeps to it the round ends as "no progress"."""
    same = todo(todo_project.BUGGY_TODO_PY + "\n# a comment does not fix it\n")
    models = todo_project.models(coder=buggy_coder(), fixer=scripted_model([same]))
    async with pipeline(tmp_path, models, max_fix_rounds=3, output_retries=1) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "failed"
    assert state.fix_rounds == 1
    recorded = [e.data for e in events if isinstance(e.data, FixAttempted)]
    assert [(a.attempt, a.outcome) for a in recorded] == [(1, "applied"), (2, "no_progress")]
    assert "the change leaves every file as it is, and the tests still fail" in recorded[1].reason
    assert "the change leaves every file as it is" in (state.failure or "")
    assert [e.type for e in events][-3:] == ["fix.attempt", "stage.failed", "task.failed"]
    run = run_from_log(events)
    assert run is not None and run.stopped == "no_progress"


async def test_a_fix_that_brings_back_earlier_code_stops_as_no_progress(tmp_path: Path) -> None:
    """Round 2 undoes round 1: a different proposal, but the task's diff is the one the
    tests already failed on. The stage stops and the commit is dropped again."""
    answers = [
        todo(todo_project.BUGGY_TODO_PY + "\n# round 1\n"),
        todo(todo_project.BUGGY_TODO_PY, "undo"),
    ]
    models = todo_project.models(coder=buggy_coder(), fixer=scripted_model(answers))
    async with pipeline(tmp_path, models, max_fix_rounds=3) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "failed"
    recorded = [e.data for e in events if isinstance(e.data, FixAttempted)]
    assert [(a.attempt, a.outcome) for a in recorded] == [(1, "applied"), (2, "no_progress")]
    assert recorded[1].diff_sha256 == recorded[0].base_diff_sha256
    assert recorded[1].commit is None
    reason = recorded[1].reason
    assert "no progress, the code is the same as before fix round 1" in reason
    # the branch is back at the last recorded commit
    assert head(p.worktree(state).path) == recorded[0].commit == state.head


async def test_a_rejected_round_is_recorded_with_its_reason(tmp_path: Path) -> None:
    bad = {"summary": "x", "files": [{"path": "../escape.py", "content": "x = 1\n"}]}
    models = todo_project.models(coder=buggy_coder(), fixer=scripted_model([bad]))
    async with pipeline(tmp_path, models, output_retries=1) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "failed"
    [attempt] = [e.data for e in events if isinstance(e.data, FixAttempted)]
    assert attempt.outcome == "rejected"
    assert "no usable answer in 2 attempts" in attempt.reason
    assert "'../escape.py' leaves the workspace" in attempt.reason
    run = run_from_log(events)
    assert run is not None and run.stopped == "failed" and not run.fixed
