"""The worktree lock holds across processes: a process working in a worktree keeps
another out until it is done, and a waiter that gives up leaves the lock free."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.lock import lock_file

HOLDER = """
import fcntl, os, sys, time
from pathlib import Path
lock, held, release = map(Path, sys.argv[1:4])
lock.parent.mkdir(parents=True, exist_ok=True)
fd = os.open(lock, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
held.write_text("held")
while not release.exists():
    time.sleep(0.01)
Path(sys.argv[4]).write_text("done")  # the last thing it does with the lock held
"""


async def _until(path: Path) -> None:
    for _ in range(1000):
        if path.exists():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


async def test_another_process_holding_a_worktree_keeps_this_one_out(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tree = GitWorkspace(repo / ".forgeline" / "worktrees" / "t1")
    assert lock_file(tree.path) == repo / ".forgeline" / "locks" / "t1.lock"  # outside the tree
    held, release, done = tmp_path / "held", tmp_path / "release", tmp_path / "done"
    paths = [str(p) for p in (lock_file(tree.path), held, release, done)]
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, *paths)
    try:
        await _until(held)
        entered: list[bool] = []

        async def work() -> None:
            async with tree.lock:
                entered.append(done.exists())  # the other process had finished

        waiter = asyncio.create_task(work())
        await asyncio.sleep(0.3)
        assert not waiter.done()  # still waiting for the other process
        release.write_text("go")
        await asyncio.wait_for(waiter, 30)
        assert entered == [True]
    finally:
        release.write_text("go")
        await asyncio.wait_for(holder.wait(), 10)


async def test_a_cancelled_waiter_leaves_the_lock_free_and_coroutines_take_turns(
    tmp_path: Path,
) -> None:
    tree = GitWorkspace(tmp_path / "checkout")
    order: list[str] = []

    async def work(name: str) -> None:
        async with tree.lock:
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    first = asyncio.create_task(work("a"))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(work("gone"))
    second = asyncio.create_task(work("b"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert order == ["a in", "a out", "b in", "b out"]  # never interleaved
    async with tree.lock:  # and free again afterwards
        pass
    assert lock_file(tree.path) == tree.path / ".forgeline" / "checkout.lock"  # not git
    (tree.path / ".git").mkdir()
    assert lock_file(tree.path) == tree.path / ".git" / "forgeline-checkout.lock"
