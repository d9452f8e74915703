"""A lock on one checkout that holds across processes.

``async with GitWorkspace(path).lock:`` is held around every checkout, write, commit and
test run in a task's worktree. In the process, an ``asyncio.Lock`` per path queues the
coroutines; across processes (two CLI runs, a server and a CLI, a worker sharing the
filesystem) an exclusive ``flock`` on a lock file in ``.forgeline/`` does. A waiter polls
with ``LOCK_NB`` instead of blocking a thread in ``flock``, so cancelling it leaves no
thread behind that would take the lock later; the lock is released when its file is
closed, and the kernel releases it if the process dies.

The lock file of a task's worktree ``<repo>/.forgeline/worktrees/<id>`` is
``<repo>/.forgeline/locks/<id>.lock``, outside the worktree (code run in the worktree
cannot remove it); a repository's own checkout has ``.git/forgeline-checkout.lock`` (no
file appears among its own), anything else ``<checkout>/.forgeline/checkout.lock``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from forgeline.errors import WorkspaceError

_local: dict[Path, asyncio.Lock] = {}


def lock_file(checkout: Path) -> Path:
    """Where the cross-process lock of ``checkout`` (a resolved path) lives."""
    parent = checkout.parent
    if parent.name == "worktrees" and parent.parent.name == ".forgeline":
        return parent.parent / "locks" / f"{checkout.name}.lock"
    if (checkout / ".git").is_dir():
        return checkout / ".git" / "forgeline-checkout.lock"
    return checkout / ".forgeline" / "checkout.lock"


class CheckoutLock:
    """Exclusive use of one checkout, by one coroutine of one process at a time."""

    poll_interval = 0.02
    """Seconds between tries while another process holds the lock (up to 10x that)."""

    def __init__(self, checkout: Path) -> None:
        self.checkout = checkout
        self.path = lock_file(checkout)
        self._fd: int | None = None

    def _in_process(self) -> asyncio.Lock:
        return _local.setdefault(self.checkout, asyncio.Lock())

    async def __aenter__(self) -> CheckoutLock:
        local = self._in_process()
        await local.acquire()
        try:
            self._fd = await self._acquire_file()
        except BaseException:
            local.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock
        self._in_process().release()

    async def _acquire_file(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the lock file {self.path}: {exc}") from exc
        wait = self.poll_interval
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    await asyncio.sleep(wait)  # another process works in this checkout
                    wait = min(wait * 2, self.poll_interval * 10)
        except BaseException:
            os.close(fd)
            raise
