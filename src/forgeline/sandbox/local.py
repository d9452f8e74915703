"""``LocalSpawner``: the ``ProcessSpawner`` with plain local child processes (no isolation).

Each child starts in a new session, so it leads its own process group that a timeout, a
stop or a cancellation kills as a whole. ``run`` starts it behind the launcher
(``sandbox.launcher``), which reports its exit and its own rusage. It is what the sandbox
builds on and what runs untrusted code only when the user asks for no sandbox
(``--unsafe-no-sandbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from forgeline.sandbox.child import DRAIN_S, run_child
from forgeline.sandbox.groups import check_pgid, terminate_group
from forgeline.sandbox.launcher import Launch, LaunchReport, command_pidfd
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
    """A command started behind the launcher (``sandbox.launcher``), which a thread of
    ours reaps with ``wait4`` (the run loop's ``Child``).

    The command leads its own session and process group (``group``, its pid, from the
    launcher's report), which a timeout or the end of the run kills; the launcher is
    outside it, so it still reports the command's exit status and rusage then. Only a
    cancellation kills the launcher too (and a run without its report has no CPU time or
    peak memory). The command and the launcher are signalled through pidfds, so a pid
    that was reaped and reused is never hit.
    """

    def __init__(self, popen: subprocess.Popen[bytes], report: LaunchReport, started: float):
        self.popen = popen
        self.pid = popen.pid  # the launcher's
        self.report = report
        self.started = started
        self.ended: float | None = None
        self.status: int | None = None
        self._loop = asyncio.get_running_loop()
        self._pidfd: int | None = None
        self._command_fd: int | None = None
        self._fd_lock = threading.Lock()
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(popen.pid)
        self.exited: asyncio.Future[None] = self._loop.create_future()
        name = f"forgeline-reaper-{self.pid}"
        threading.Thread(target=self._reap, name=name, daemon=True).start()

    def _reap(self) -> None:
        status: int | None = None
        with contextlib.suppress(ChildProcessError):
            _, status, _ = os.wait4(self.pid, 0)  # its rusage is of forgeline's memory
        self.ended = time.monotonic()
        self.report.read()  # all of it: the launcher is gone
        with self._fd_lock:
            self.status = status
            if status is not None:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
            for fd in (self._pidfd, self._command_fd):
                if fd is not None:
                    os.close(fd)
            self._pidfd = self._command_fd = None

        def deliver() -> None:
            self.report.close()
            if not self.exited.done():
                self.exited.set_result(None)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting
            self.report.close()

    @property
    def group(self) -> int | None:
        """The command's pid, which is also its process group's id, once known."""
        return self.report.pid

    @property
    def exit_code(self) -> int | None:
        if self.report.exit is not None:
            return self.report.exit.exit_code
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def _signal(self, sig: signal.Signals, *, command: bool) -> None:
        """Signal the command (``command``) or the launcher, by pidfd, while ours."""
        with self._fd_lock, contextlib.suppress(ProcessLookupError, OSError):
            if self.status is not None:
                return
            if not command:
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, sig)
                return
            if self._command_fd is None and self.group is not None:
                self._command_fd = command_pidfd(self.group, self.pid)
            if self._command_fd is not None:
                signal.pidfd_send_signal(self._command_fd, sig)

    async def ready(self) -> bool:
        return await self.report.wait_started()

    def start_error(self, program: str, reason: str) -> SpawnError:
        return SpawnError(f"could not start {program!r}: {reason or 'no reason given'}")

    async def watch(self) -> None:
        await asyncio.Event().wait()  # no limits to watch

    async def terminate(self, grace: float) -> None:
        group = self.group
        if group is None:
            self._signal(signal.SIGKILL, command=False)  # the command never ran
        else:
            await terminate_group(group, grace)
            self._signal(signal.SIGKILL, command=True)  # in case it is still there
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), DRAIN_S)

    def kill_now(self) -> None:
        self.report.read()
        group = self.group
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError, SpawnError):
                check_pgid(group)
                os.killpg(group, signal.SIGKILL)
            self._signal(signal.SIGKILL, command=True)
        # Without a pid the command has not been let run: it exits when the launcher does.
        self._signal(signal.SIGKILL, command=False)

    def usage(self) -> ResourceUsage:
        wall = (self.ended or time.monotonic()) - self.started
        ended = self.report.exit
        if ended is None:
            return ResourceUsage(mechanism="none", wall_s=wall)
        return ResourceUsage(
            mechanism="none",
            wall_s=wall,
            cpu_s=ended.cpu_s,
            peak_memory_bytes=ended.peak_memory_bytes,
        )


def _launch(args: tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> _LocalChild:
    """Start ``args`` behind the launcher, in a session of its own (see ``_LocalChild``)."""
    started = time.monotonic()
    launch = Launch(args, env)
    try:
        popen = subprocess.Popen(
            launch.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=launch.pass_fds,
            start_new_session=True,
        )
    except OSError as exc:
        launch.abandon()
        raise SpawnError(f"could not start {args[0]!r}: {exc}") from exc
    launch.spawned()
    return _LocalChild(popen, launch.report, started)


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
    time and peak memory from the kernel's rusage of the child, which counts the
    descendants it waited for but not those it left behind. The launcher reaps the child
    and reports it, so the peak is the child's own (within the launcher's few MB), not
    forgeline's: a child exec'd straight from forgeline would start from forgeline's peak.

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
        child = _launch(args, cwd, child_env(env, mounts))
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
