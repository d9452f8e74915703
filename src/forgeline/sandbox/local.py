"""``LocalSpawner``: the ``ProcessSpawner`` with plain local child processes (no isolation).

Each child starts in a new session, so it leads its own process group that a timeout, a
stop or a cancellation kills as a whole. It is what the sandbox builds on and what runs
untrusted code only when the user asks for no sandbox (``--unsafe-no-sandbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from forgeline.sandbox.child import DRAIN_S, run_child
from forgeline.sandbox.groups import check_pgid, terminate_group
from forgeline.sandbox.spawner import (
    NO_MOUNTS,
    Mounts,
    ProcessResult,
    ResourceUsage,
    SpawnError,
    check_request,
    child_env,
)

__all__ = ["LocalProcess", "LocalSpawner"]


class _LocalChild:
    """A ``Popen`` child that a thread of ours reaps with ``wait4``, keeping its rusage
    (the run loop's ``Child``).

    Signals to the child itself go through a pidfd where the kernel has them, so a pid
    that was reaped and reused is never hit.
    """

    def __init__(self, popen: subprocess.Popen[bytes], started: float) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.started = started
        self.ended: float | None = None
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self._loop = asyncio.get_running_loop()
        self._pidfd: int | None = None
        self._fd_lock = threading.Lock()
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(popen.pid)
        self.exited: asyncio.Future[None] = self._loop.create_future()
        name = f"forgeline-reaper-{self.pid}"
        threading.Thread(target=self._reap, name=name, daemon=True).start()

    def _reap(self) -> None:
        status: int | None = None
        rusage: resource.struct_rusage | None = None
        with contextlib.suppress(ChildProcessError):
            _, status, rusage = os.wait4(self.pid, 0)
        self.ended = time.monotonic()
        with self._fd_lock:
            self.status, self.rusage = status, rusage
            if status is not None:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None

        def deliver() -> None:
            if not self.exited.done():
                self.exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(deliver)

    @property
    def exit_code(self) -> int | None:
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def _signal(self, sig: signal.Signals) -> None:
        with self._fd_lock, contextlib.suppress(ProcessLookupError, OSError):
            if self.status is not None:
                return
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    async def ready(self) -> bool:
        return True  # Popen has started it

    def start_error(self, program: str, reason: str) -> SpawnError:
        return SpawnError(f"could not start {program!r}: {reason or 'no reason given'}")

    async def watch(self) -> None:
        await asyncio.Event().wait()  # no limits to watch

    async def terminate(self, grace: float) -> None:
        await terminate_group(self.pid, grace)
        if self.status is None:
            # The leader left its group (setpgid): signal it directly.
            self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), DRAIN_S)

    def kill_now(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, SpawnError):
            check_pgid(self.pid)
            os.killpg(self.pid, signal.SIGKILL)
        self._signal(signal.SIGKILL)

    def usage(self) -> ResourceUsage:
        wall = (self.ended or time.monotonic()) - self.started
        if self.rusage is None:
            return ResourceUsage(mechanism="none", wall_s=wall)
        return ResourceUsage(
            mechanism="none",
            wall_s=wall,
            cpu_s=self.rusage.ru_utime + self.rusage.ru_stime,
            peak_memory_bytes=self.rusage.ru_maxrss * 1024,  # kilobytes on Linux
        )


def _popen(args: tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # Popen rather than asyncio's subprocess: our own thread reaps it with wait4, which
    # gives the child's rusage (CPU time, peak memory) along with its status.
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise SpawnError(f"could not start {args[0]!r}: {exc}") from exc


def _kill_now(proc: asyncio.subprocess.Process) -> None:
    """Last resort (cancellation): SIGKILL the group and the leader, no waiting."""
    with contextlib.suppress(ProcessLookupError, PermissionError, SpawnError):
        check_pgid(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


class LocalProcess:
    """A detached child started by ``LocalSpawner.start``; it leads its own process group."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: tuple[str, ...], log_path: Path):
        self._proc = proc
        self.argv = argv
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    async def stop(self, timeout: float = 5) -> int | None:
        try:
            await terminate_group(self._proc.pid, timeout)
            if self._proc.returncode is None:
                # The leader left its group (setpgid): signal it directly.
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            try:
                return await asyncio.wait_for(self._proc.wait(), DRAIN_S)
            except TimeoutError:
                return None
        except BaseException:
            _kill_now(self._proc)
            raise

    def __repr__(self) -> str:
        return f"LocalProcess(pid={self.pid}, returncode={self.returncode}, argv={self.argv!r})"


class LocalSpawner:
    """``ProcessSpawner`` with plain local child processes.

    Each child starts in a new session (``start_new_session=True``), so it leads its own
    process group; a timeout or a stop sends SIGTERM to the whole group, waits ``kill_grace``
    seconds, then sends SIGKILL, and reaps the leader. ``run`` also kills whatever is left
    of the group once the leader exits, so background processes a test suite forgot do not
    outlive it. stdin is ``/dev/null``; argv lists only, never a shell.

    The environment is an allowlist: ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``, ``TMPDIR``
    and ``TZ`` from ours (when set), ``PYTHONDONTWRITEBYTECODE=1`` and
    ``PYTHONUNBUFFERED=1``, the venv of ``mounts`` (``VIRTUAL_ENV``, its ``bin`` first on
    ``PATH``), then whatever ``env`` the caller passes. Secrets in our environment (API
    keys, database URLs) never reach the child. ``mounts.binds`` need nothing here: the
    child sees the whole file system.

    ``run`` reports what the child used (``ProcessResult.usage``, mechanism ``none``): CPU
    time and peak memory from the kernel's rusage of the child (``wait4``), which counts the
    descendants it waited for but not those it left behind.

    This is not isolation: the sandbox (bubblewrap namespaces, cgroup limits, no network)
    is ``sandbox.bwrap.BwrapSandbox``.
    """

    def __init__(self, *, kill_grace: float = 2.0) -> None:
        self.kill_grace = kill_grace

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        args = check_request(argv, cwd, max_output)
        started = time.monotonic()
        popen = _popen(args, cwd, child_env(env, mounts))
        child = _LocalChild(popen, started)
        return await run_child(
            child, args, timeout=timeout, max_output=max_output, kill_grace=self.kill_grace
        )

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        log_path: Path,
    ) -> LocalProcess:
        args = check_request(argv, cwd)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    cwd=cwd,
                    env=child_env(env, mounts),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise SpawnError(f"could not start {args[0]!r}: {exc}") from exc
        return LocalProcess(proc, args, log_path)
