"""Workers without a shared filesystem: `[transport] git_remote`. The submitter and the
worker have workspaces roots of their own; the repository travels through a bare
repository on disk. Real Postgres, RabbitMQ, git; scripted models."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from forgeline.core.events import task_stream
from forgeline.errors import WorkspaceError
from forgeline.transport.remote import PublishingWorkspace, RemoteError
from tests.scripts import todo_project
from tests.transport.conftest import runtime, settings, worker

REQUEST = "a todo CLI storing items in todo.json"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


async def test_a_worker_on_another_root_clones_works_on_the_branch_and_pushes_back(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    remote = tmp_path / "remote"
    here, there = tmp_path / "submitter", tmp_path / "worker"
    here.mkdir()
    there.mkdir()
    mine = settings(here, store_url, broker_url, git_remote=str(remote))
    theirs = settings(there, store_url, broker_url, git_remote=str(remote))
    async with worker(theirs) as serving, runtime(mine) as submitter:
        task_id = await submitter.submit(REQUEST, here / "todo")
        state = await submitter.state(task_id)
        # submitting made the bare repository and pushed the task's branch to it
        assert git(remote / "todo", "rev-parse", state.branch).strip() == state.base_commit
        state = await asyncio.wait_for(submitter.run_until_settled(task_id), 90)
        assert state.status == "completed", state.failure
        events = await submitter.store.read_stream(task_stream(task_id))
        assert [e.type for e in events] == todo_project.EVENT_CHAIN
        assert serving.handled >= 6
        # the worker worked in a clone under its own root ...
        cloned = there / "todo" / ".forgeline" / "worktrees" / task_id
        assert (cloned / "todo.py").is_file()
        assert git(cloned, "rev-parse", "HEAD").strip() == state.head
        # ... and pushed every commit it made: the remote's branch is the recorded head
        assert git(remote / "todo", "rev-parse", state.branch).strip() == state.head
        log = git(remote / "todo", "log", "--format=%B%x00", f"{state.base_commit}..{state.head}")
        causes = [
            line for entry in log.split("\x00") for line in entry.splitlines()
            if line.startswith("Event: ")
        ]  # fmt: skip
        assert len(causes) >= 4 and max(Counter(causes).values()) == 1, causes
        # the submitter fetched them into its own worktree: its summary shows them
        commits = await submitter.commits(state)
        assert len(commits) == len(causes)
        assert (here / "todo" / ".forgeline" / "worktrees" / task_id / "todo.py").is_file()


async def test_a_commit_on_a_branch_that_moved_in_the_remote_is_dropped_and_retried(
    tmp_path: Path,
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    first, second = tmp_path / "one", tmp_path / "two"
    for clone in (first, second):
        git(tmp_path, "clone", "-q", str(remote), str(clone))
        git(clone, "checkout", "-q", "-b", "forgeline/t1")
    who = ("-c", "user.name=a", "-c", "user.email=a@b")
    git(first, *who, "commit", "-q", "--allow-empty", "-m", "base")
    git(first, "push", "-q", "origin", "forgeline/t1")
    git(second, "fetch", "-q", "origin")
    git(second, "reset", "-q", "--hard", "origin/forgeline/t1")
    base = git(first, "rev-parse", "HEAD").strip()

    one = PublishingWorkspace(first, str(remote), "forgeline/t1")
    two = PublishingWorkspace(second, str(remote), "forgeline/t1")
    (first / "a.txt").write_text("a\n")
    pushed = await one.commit("a", ["a.txt"])
    assert pushed is not None
    assert git(remote, "rev-parse", "forgeline/t1").strip() == pushed

    # the second machine still stands on the base: its commit would fork the branch
    (second / "b.txt").write_text("b\n")
    with pytest.raises(RemoteError, match="moved"):
        await two.commit("b", ["b.txt"])
    assert git(remote, "rev-parse", "forgeline/t1").strip() == pushed  # untouched
    assert git(second, "rev-parse", "HEAD").strip() == base  # its commit dropped
    assert isinstance(RemoteError("x"), WorkspaceError)
