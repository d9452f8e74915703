"""Who is working on a task's worktree, across the processes that share it.

A worker holds the task's activity lock *shared* while it handles a message of the task,
and takes it *exclusive* to put back what a dead worker left in the worktree (a
redelivered message: ``Pipeline.recover``, as ``resume`` does). So recovery never resets
a worktree under a stage that another live process (or this one) is still running, and
independent stages of one task still run side by side. It is an ``flock`` on
``<repository>/.forgeline/locks/<task id>.active``, next to the worktree lock: the
kernel drops a dead process's share at once. Waiting polls with ``LOCK_NB``, so a
cancelled waiter leaves nothing behind.

``running`` is a second lock, one per piece of work (a stage on one event): the broker
may give a message out again while its first run still goes on (after a lost
connection, a broker restart, or a relay that published it twice), and the second run
waits for the first, then finds its result recorded. Two runs of one stage at once
would each commit, one on the other, and only one result would name its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

from forgeline.errors import WorkspaceError

POLL = 0.02


def activity_file(worktree: Path) -> Path:
    """The activity lock of the worktree ``<repo>/.forgeline/worktrees/<id>``."""
    return worktree.parent.parent / "locks" / f"{worktree.name}.active"


@contextlib.asynccontextmanager
async def activity(worktree: Path, *, exclusive: bool) -> AsyncIterator[None]:
    async with _flocked(activity_file(worktree), exclusive=exclusive):
        yield


@contextlib.asynccontextmanager
async def running(worktree: Path, work: str) -> AsyncIterator[None]:
    """Hold ``work``'s run lock (``<task id>.<work>.run`` next to the activity lock); its
    file is removed when the run ends without an error (a later run finds the work
    recorded, whatever lock it takes)."""
    path = activity_file(worktree).with_name(f"{worktree.name}.{work}.run")
    async with _flocked(path, exclusive=True):
        yield
        path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _flocked(path: Path, *, exclusive: bool) -> AsyncIterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise WorkspaceError(f"cannot create the lock file {path}: {exc}") from exc
    try:
        wait = POLL
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(wait)
                wait = min(wait * 2, POLL * 25)
        yield
    finally:
        os.close(fd)
