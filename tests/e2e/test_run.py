"""Whole requests through the real `forgeline` command: a run, a kill -9 and resume,
Ctrl-C and SIGTERM that stop the work in flight at once, a cancel from another process,
and a deleted worktree made again by resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from forgeline.core.changes import fold as fold_change
from forgeline.core.events import Event
from forgeline.store import SQLiteEventStore
from tests.e2e.helpers import config_file, forgeline, git, start, task_id_from, wait_for
from tests.scripts.todo_project import EVENT_CHAIN as CHAIN

pytestmark = pytest.mark.slow

REQUEST = "build a todo CLI that stores items in todo.json"


async def recorded(ws: Path) -> list[Event]:
    async with SQLiteEventStore(ws / ".forgeline" / "forgeline.db") as store:
        return await store.read_all(after=0, limit=10_000)


def assert_no_duplicate_effects(events: list[Event]) -> None:
    effects = Counter((e.stream_id, e.causation_id, e.type) for e in events if e.causation_id)
    assert [k for k, n in effects.items() if n > 1] == []


@pytest.mark.parametrize("mode", ["event", "sequential"])
async def test_forgeline_run_builds_the_request(tmp_path: Path, mode: str) -> None:
    ws = tmp_path / "todo"
    result = forgeline(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(config_file(tmp_path)),
        "--mode",
        mode,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    task_id = task_id_from(result.stdout)
    # progress and the closing summary
    for stage in ("planner", "architect", "coder", "tester", "reviewer", "deployer"):
        assert stage in result.stdout
    assert f"branch   forgeline/{task_id}" in result.stdout
    assert "tests    2 passed, 0 failed" in result.stdout
    assert "review   approved" in result.stdout
    assert "deploy   cli ok" in result.stdout
    # the event chain, the branch and one commit per changing stage
    events = await recorded(ws)
    task_events = [e for e in events if e.stream_id == f"task-{task_id}"]
    assert [e.type for e in task_events] == CHAIN
    tree = ws / ".forgeline" / "worktrees" / task_id
    assert f"worktree {tree}" in result.stdout
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"forgeline/{task_id}"
    subjects = git(tree, "log", "--format=%s", "main..HEAD").splitlines()
    assert len(subjects) == 4
    assert all(s.startswith("forgeline ") for s in subjects)
    # the workspace's tests pass on the branch, run here independently of forgeline
    check = forgeline_pytest(tree)
    assert check.returncode == 0, check.stdout
    # CTRM: one completed change per changing stage, hash and commit recorded
    changes = {e.stream_id for e in events if e.stream_id.startswith("change-")}
    assert len(changes) == 4
    for stream in changes:
        state = fold_change(
            stream.removeprefix("change-"), [e for e in events if e.stream_id == stream]
        )
        assert state.status == "completed"
        assert state.commit is not None
        assert state.diff_sha256 is not None
    # the read commands agree
    listed = forgeline("tasks", "--workspace", str(ws), tmp_path=tmp_path)
    assert task_id in listed.stdout
    assert "completed" in listed.stdout
    shown = forgeline("events", task_id, "--workspace", str(ws), tmp_path=tmp_path)
    assert shown.stdout.count("\n") >= len(CHAIN)
    assert "task.completed" in shown.stdout


def forgeline_pytest(ws: Path):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.mark.parametrize(
    ("stage", "finished_before"),
    [("coder", "planner,architect"), ("reviewer", "planner,architect,coder")],
)
async def test_kill_9_mid_stage_then_resume_finishes_without_redoing_work(
    tmp_path: Path, stage: str, finished_before: str
) -> None:
    ws = tmp_path / "todo"
    cfg = config_file(tmp_path)
    marker = tmp_path / "reached"
    log = tmp_path / "run.log"
    proc = start(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        log=log,
        TODO_SCRIPT_BLOCK=stage,
        TODO_SCRIPT_MARKER=str(marker),
    )
    wait_for(marker, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    task_id = task_id_from(log.read_text())
    before = await recorded(ws)
    assert before[-1].type != "task.completed"

    # Completed stages' models refuse to be called again: a re-run would fail the task.
    resumed = forgeline(
        "resume",
        task_id,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        TODO_SCRIPT_FORBID=finished_before,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = await recorded(ws)
    assert after[: len(before)] == before  # nothing recorded was lost or rewritten
    task_events = [e for e in after if e.stream_id == f"task-{task_id}"]
    assert [e.type for e in task_events] == CHAIN
    assert_no_duplicate_effects(after)
    # one commit per changing stage: the killed attempt left no extra commit behind
    tree = ws / ".forgeline" / "worktrees" / task_id
    assert len(git(tree, "log", "--format=%s", "main..HEAD").splitlines()) == 4
    assert git(tree, "status", "--porcelain").strip() == ""
    changes = Counter(e.type for e in after if e.stream_id.startswith("change-"))
    assert changes == {"change.pending": 4, "change.in_progress": 4, "change.completed": 4}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_during_a_model_call_stops_at_once_then_resume_continues(
    tmp_path: Path, sig: signal.Signals
) -> None:
    ws = tmp_path / "todo"
    cfg = config_file(tmp_path)
    marker = tmp_path / "reached"
    log = tmp_path / "run.log"
    proc = start(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        log=log,
        TODO_SCRIPT_BLOCK="coder",  # a model call that never answers
        TODO_SCRIPT_MARKER=str(marker),
    )
    wait_for(marker, proc, log)
    proc.send_signal(sig)
    assert proc.wait(10) == 130, log.read_text()  # at once, not when the model answers
    output = log.read_text()
    assert "Traceback" not in output
    assert "forgeline resume" in output
    task_id = task_id_from(output)
    types = [e.type for e in await recorded(ws) if e.stream_id == f"task-{task_id}"]
    # nothing false: the coder's run left no failure behind, only the dispatch before it
    assert types[-1] == "plan.item.dispatched"
    resumed = forgeline(
        "resume",
        task_id,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        TODO_SCRIPT_FORBID="planner,architect",
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    types = [e.type for e in await recorded(ws) if e.stream_id == f"task-{task_id}"]
    assert types == CHAIN


def wait_for_task(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while "on branch" not in (text := log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.05)
    return task_id_from(text)


async def test_cancel_from_another_process_stops_the_running_tests(tmp_path: Path) -> None:
    ws = tmp_path / "todo"
    cfg = config_file(tmp_path)
    log = tmp_path / "run.log"
    proc = start(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        log=log,
        TODO_SCRIPT_SLOW_TESTS="60",  # three tests of a minute each
    )
    task_id = wait_for_task(log, proc)
    wait_for(ws / ".forgeline" / "worktrees" / task_id / "tests-started", proc, log)
    cancelled = forgeline(
        "cancel", task_id[:6], "--workspace", str(ws), "--config", str(cfg), tmp_path=tmp_path
    )
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"task {task_id} cancelled" in cancelled.stdout
    proc.wait(20)  # the test run was stopped, not waited for
    assert "Traceback" not in log.read_text()
    events = await recorded(ws)
    mine = [e for e in events if task_id in e.stream_id]
    cancel = next(i for i, e in enumerate(mine) if e.type == "task.cancelled")
    assert "test.results" not in [e.type for e in mine]
    assert [e.type for e in mine[cancel + 1 :]] == []  # nothing recorded for it afterwards


async def test_a_deleted_worktree_is_reported_then_made_again_by_resume(tmp_path: Path) -> None:
    ws = tmp_path / "todo"
    cfg = config_file(tmp_path)
    marker = tmp_path / "reached"
    log = tmp_path / "run.log"
    proc = start(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        log=log,
        TODO_SCRIPT_BLOCK="reviewer",
        TODO_SCRIPT_MARKER=str(marker),
    )
    wait_for(marker, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    task_id = task_id_from(log.read_text())
    tree = ws / ".forgeline" / "worktrees" / task_id
    shutil.rmtree(tree)

    status = forgeline("status", task_id, "--workspace", str(ws), tmp_path=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Traceback" not in status.stdout + status.stderr
    assert f"`forgeline resume {task_id}` makes it again" in status.stdout

    resumed = forgeline(
        "resume",
        task_id[:5],  # a prefix, as git takes one
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        TODO_SCRIPT_FORBID="planner,architect,coder",
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    types = [e.type for e in await recorded(ws) if e.stream_id == f"task-{task_id}"]
    assert types == CHAIN
    assert len(git(tree, "log", "--format=%s", "main..HEAD").splitlines()) == 4
    assert (tree / "todo.py").is_file()


async def test_events_follow_prints_live_until_the_task_ends(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.e2e.helpers import env

    ws = tmp_path / "todo"
    cfg = config_file(tmp_path)
    marker = tmp_path / "reached"
    log = tmp_path / "run.log"
    proc = start(
        "run",
        REQUEST,
        "--workspace",
        str(ws),
        "--config",
        str(cfg),
        tmp_path=tmp_path,
        log=log,
        TODO_SCRIPT_SLOW="reviewer",
        TODO_SCRIPT_MARKER=str(marker),
        TODO_SCRIPT_DELAY="2",
    )
    wait_for(marker, proc, log)
    task_id = task_id_from(log.read_text())
    follower = subprocess.run(
        [sys.executable, "-m", "forgeline", "events", task_id, "--follow", "--workspace", str(ws)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.wait(30) == 0
    assert follower.returncode == 0, follower.stderr
    lines = [line for line in follower.stdout.splitlines() if line.strip()]
    assert "task.initiated" in lines[0]
    assert "task.completed" in lines[-1]  # it kept following past the slow review
