"""One started sandbox: its bwrap process, pid namespace and cgroup, until all is gone;
and ``BwrapProcess``, the handle ``BwrapSandbox.start`` gives for one.

A reaper thread waits for bwrap and then reads and removes the run's cgroup, or reads the
launcher's report (no cgroup: the launcher is the sandbox's init). Killing goes by pidfd
only: the sandbox's init (the kernel then kills its whole pid namespace), bwrap, and
whatever is left in the namespace or the cgroup. ``SandboxInstance`` is the run loop's
``Child`` (``sandbox.child``) for ``BwrapSandbox.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgeline.sandbox.bwrap.cgroups import RunCgroup
from forgeline.sandbox.bwrap.errors import SandboxError
from forgeline.sandbox.bwrap.kernfs import read_text
from forgeline.sandbox.bwrap.limits import Mechanism, ResourceUsage
from forgeline.sandbox.bwrap.pidns import (
    KILL_POLL_S,
    namespace_members,
    pidfd_open,
    pidfd_signal,
)
from forgeline.sandbox.child import DRAIN_S
from forgeline.sandbox.launcher import Launch

__all__ = ["BwrapProcess", "SandboxInstance"]

_INFO_TIMEOUT_S = 30.0
_CPU_POLL_S = 0.1


class SandboxInstance:
    """One started sandbox: the wrapper (then bwrap) process, its pid namespace, cgroup."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        cgroup: RunCgroup | None,
        mechanism: Mechanism,
        info_fd: int,
        started: float,
        cpu_seconds: float | None = None,
        launch: Launch | None = None,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.cgroup = cgroup
        self.cpu_seconds = cpu_seconds
        self.mechanism: Mechanism = mechanism
        self.started = started
        self._info_fd: int | None = info_fd
        self._pidfd = pidfd_open(popen.pid)
        self._init_pidfd: int | None = None
        # Held open so that the pid namespace (and so its inode number, by which its members
        # are found in /proc) cannot be freed and reused while we may still look for them.
        self._ns_fd: int | None = None
        self.init_pid: int | None = None
        self.pid_ns: int | None = None
        self.status: int | None = None
        self.launch = launch
        """The launcher, when it is the sandbox's init (no cgroup)."""
        self.report = launch.report if launch is not None else None
        self.ended: float | None = None
        self.final_stats: tuple[float | None, int | None, int | None, list[str]] | None = None
        self.killed = False
        self.limits_hit: list[str] = []
        self.sampled_cpu_s: float | None = None
        self.sampled_rss: int | None = None
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._fd_lock = threading.Lock()
        #: Called on the event loop once it has exited (closing a port forward).
        self.on_exit: list[Callable[[], None]] = []
        threading.Thread(target=self._reap, name=f"bwrap-reaper-{self.pid}", daemon=True).start()

    # ------------------------------------------------------------------ lifecycle

    def _reap(self) -> None:
        status: int | None = None
        with contextlib.suppress(ChildProcessError):
            # bwrap's rusage: its own (it carries forgeline's peak memory), not the sandbox's.
            _, status, _ = os.wait4(self.pid, 0)
        self.ended = time.monotonic()
        self.status = status
        if self.report is not None:
            self.report.read()  # all of it: bwrap exits after its init, the launcher
        if status is not None:
            self.popen.returncode = os.waitstatus_to_exitcode(status)
        # bwrap exits after its init, and the kernel empties a pid namespace before its init
        # is gone; what the cgroup still holds is on its way out. Read it, then remove it.
        if self.cgroup is not None:
            self.final_stats = self.cgroup.stats()
            self.cgroup.remove()
        self._close_fds()

        def deliver() -> None:
            if self.report is not None:
                self.report.close()
            for callback in self.on_exit:
                callback()
            if not self.exited.done():
                self.exited.set_result(None)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting
            if self.report is not None:
                self.report.close()

    def _close_fds(self) -> None:
        if self.launch is not None:
            self.launch.release(False)
        with self._fd_lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._pidfd, self._init_pidfd, self._ns_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._pidfd = self._init_pidfd = self._ns_fd = None

    def _signal_own(self, sig: signal.Signals, *, init: bool) -> None:
        """Signal the sandbox's init (if ``init``) then bwrap, by pidfd (never a reused pid)."""
        with self._fd_lock:
            if self._closed:
                return
            if init:
                pidfd_signal(self._init_pidfd, sig)
            pidfd_signal(self._pidfd, sig)

    async def ready(self) -> bool:
        """Read bwrap's info (its init's pid and pid namespace); False if it never came."""
        fd = self._info_fd
        if fd is None:
            return self.init_pid is not None
        self._info_fd = None
        os.set_blocking(fd, False)
        buf = bytearray()
        got: asyncio.Future[dict[str, Any] | None] = self._loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                if not got.done():
                    got.set_result(None)
                return
            buf.extend(chunk)
            with contextlib.suppress(ValueError):
                info = json.loads(buf.decode("utf-8", errors="replace"))
                if isinstance(info, dict) and not got.done():
                    got.set_result(info)

        self._loop.add_reader(fd, readable)
        try:
            info = await asyncio.wait_for(got, _INFO_TIMEOUT_S)
        except TimeoutError:
            info = None
        finally:
            self._loop.remove_reader(fd)
            os.close(fd)
        if info is None:
            if self.launch is not None:
                self.launch.release(False)
            return False
        child, ns = info.get("child-pid"), info.get("pid-namespace")
        if isinstance(child, int) and isinstance(ns, int):
            self.init_pid = child
            fd_init = pidfd_open(child, ns)
            fd_ns: int | None = None
            if fd_init is not None:
                with contextlib.suppress(OSError):
                    fd_ns = os.open(f"/proc/{child}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                    if os.fstat(fd_ns).st_ino != ns:
                        os.close(fd_ns)
                        fd_ns = None
            with self._fd_lock:
                if not self._closed:
                    self._init_pidfd, fd_init = fd_init, None
                    self._ns_fd, fd_ns = fd_ns, None
                    if self._ns_fd is not None:
                        self.pid_ns = ns
            for unused in (fd_init, fd_ns):
                if unused is not None:
                    os.close(unused)
        if self.launch is not None:
            # The launcher runs the command only now that a kill of its init reaches it.
            self.launch.release(self._init_pidfd is not None)
        return True

    def start_error(self, program: str, reason: str) -> SandboxError:
        return SandboxError(
            f"could not start the sandbox for {program!r}: "
            f"{reason[-2000:] or 'bubblewrap gave no reason'}"
        )

    async def watch(self) -> None:
        """Return once the run's total CPU time (from its cgroup) exceeds ``cpu_seconds``.
        Without a cgroup, sample the sandbox's processes for the usage numbers instead
        (the CPU rlimit stops them there)."""
        while True:
            await asyncio.sleep(_CPU_POLL_S)
            if self.cgroup is None:
                self.sample()
                continue
            used = self.cgroup.cpu_s()
            if self.cpu_seconds is not None and used is not None and used > self.cpu_seconds:
                self.limits_hit.append("cpu")
                return

    @property
    def exit_code(self) -> int | None:
        if self.status is None:
            return None
        code = os.waitstatus_to_exitcode(self.status)
        if self.killed and 128 < code <= 128 + 64:
            code = -(code - 128)  # bwrap's "128 + signal" for a child we killed
        return code

    # ------------------------------------------------------------------ killing

    def members(self) -> list[int]:
        """Host pids of the processes in the sandbox's pid namespace. Empty once bwrap has
        been reaped: its init is gone then, and the kernel has emptied the namespace."""
        with self._fd_lock:
            if self._closed or self._ns_fd is None or self.pid_ns is None:
                return []
            ns = self.pid_ns
        return namespace_members(ns)

    def _signal_members(self, sig: signal.Signals, *, skip_init: bool) -> None:
        for pid in self.members():
            if skip_init and pid == self.init_pid:
                continue
            fd = pidfd_open(pid, self.pid_ns)
            if fd is not None:
                pidfd_signal(fd, sig)
                os.close(fd)

    def kill_now(self) -> None:
        """SIGKILL the sandbox's init (the kernel then kills its whole pid namespace), bwrap
        and anything in the cgroup. Synchronous: safe in cancellation paths."""
        if self.launch is not None:
            self.launch.release(False)  # if it has not run the command, it never will
        if self.exited.done() or self.status is not None:
            return self.sweep()
        self.killed = True
        # Without the init's pid yet, killing bwrap is enough: --die-with-parent.
        self._signal_own(signal.SIGKILL, init=True)
        self.sweep()

    def sweep(self) -> None:
        """Kill whatever is left in the pid namespace or the cgroup (normally nothing)."""
        self._signal_members(signal.SIGKILL, skip_init=False)
        if self.cgroup is not None and self.status is None:
            self.cgroup.kill()

    async def terminate(self, grace: float) -> None:
        """SIGTERM the sandboxed processes, give them ``grace`` seconds, then kill it all."""
        if not self.exited.done() and grace > 0:
            self.killed = True
            if self.init_pid is None:
                self._signal_own(signal.SIGTERM, init=False)
            else:
                self._signal_members(signal.SIGTERM, skip_init=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
        self.kill_now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), DRAIN_S)
        deadline = time.monotonic() + DRAIN_S
        while self.members() and time.monotonic() < deadline:
            self.sweep()
            await asyncio.sleep(KILL_POLL_S)

    def sample(self) -> None:
        """Sample CPU time and resident memory of the sandbox's processes (no cgroup).
        The init (the launcher) counts only with what it reaped: the command, orphans."""
        if self.pid_ns is None:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        cpu = 0.0
        rss = 0
        seen = False
        for pid in self.members():
            fields = (read_text(Path(f"/proc/{pid}/stat")) or "").rpartition(")")[2].split()
            if len(fields) < 22:
                continue
            try:
                if pid == self.init_pid:
                    cpu += (int(fields[13]) + int(fields[14])) / ticks
                else:
                    cpu += (int(fields[11]) + int(fields[12])) / ticks
                    rss += int(fields[21]) * page
            except ValueError:
                continue
            seen = True
        if seen:
            self.sampled_cpu_s = max(self.sampled_cpu_s or 0.0, cpu)
            self.sampled_rss = max(self.sampled_rss or 0, rss)

    def usage(self) -> ResourceUsage:
        wall = (self.ended or time.monotonic()) - self.started
        cpu: float | None = None
        peak_mem: int | None = None
        peak_pids: int | None = None
        hit = list(self.limits_hit)
        if self.final_stats is not None:
            cpu, peak_mem, peak_pids, cg_hit = self.final_stats
            hit += [name for name in cg_hit if name not in hit]
        else:
            # No cgroup: the command's rusage from the launcher, or what sampling saw
            # (the sum over processes running at once), whichever is larger.
            cpu, peak_mem = self.sampled_cpu_s, self.sampled_rss
            ended = self.report.exit if self.report is not None else None
            if ended is not None:
                cpu = max(cpu or 0.0, ended.cpu_s)
                peak_mem = max(peak_mem or 0, ended.peak_memory_bytes)
        if self.status is not None and "cpu" not in hit:
            code = os.waitstatus_to_exitcode(self.status)
            if code in (128 + signal.SIGXCPU, -signal.SIGXCPU):
                hit.append("cpu")
        return ResourceUsage(
            mechanism=self.mechanism,
            wall_s=wall,
            cpu_s=cpu,
            peak_memory_bytes=peak_mem,
            peak_pids=peak_pids,
            limits_hit=tuple(hit),
        )


class BwrapProcess:
    """A detached sandboxed process from ``BwrapSandbox.start``.

    ``pid`` is bwrap's (it leads its own process group, so ``stop_process_group(pid)`` from
    another process works too: bwrap dies and ``--die-with-parent`` takes the sandbox down).
    """

    def __init__(self, sandboxed: SandboxInstance, argv: tuple[str, ...], log_path: Path) -> None:
        self._sandboxed = sandboxed
        self.argv = argv
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self._sandboxed.pid

    @property
    def returncode(self) -> int | None:
        return self._sandboxed.exit_code

    @property
    def usage(self) -> ResourceUsage | None:
        """Resource usage, once it has exited."""
        return self._sandboxed.usage() if self._sandboxed.status is not None else None

    async def wait(self) -> int:
        await asyncio.shield(self._sandboxed.exited)
        await self._sandboxed.terminate(0)
        code = self._sandboxed.exit_code
        return code if code is not None else -signal.SIGKILL

    async def stop(self, timeout: float = 5) -> int | None:
        try:
            await self._sandboxed.terminate(timeout)
        except BaseException:
            self._sandboxed.kill_now()
            raise
        return self._sandboxed.exit_code

    def __repr__(self) -> str:
        return f"BwrapProcess(pid={self.pid}, returncode={self.returncode}, argv={self.argv!r})"
