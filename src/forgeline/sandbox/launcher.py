"""The launcher: a small process that starts a run's command and reports what it used.

Why it exists. The kernel keeps a process's peak resident memory (``ru_maxrss``) across
``exec``: the new program starts with the high-water mark of the memory it replaced. A
child forked (or vforked, as ``subprocess`` does) from forgeline replaces forgeline's own
memory, so ``wait4`` would report every command as using at least as much as forgeline
ever did (hundreds of MB in a long-lived server or test session). The launcher is forgeline's
interpreter started with ``-I -S`` (a few MB); it forks the command and reaps it with
``wait4``, so the command starts from the launcher's small memory and the rusage it
reports is the command's own: CPU time, and peak memory within the launcher's few MB
(the descendants the command waited for count too, the largest peak counting).

Given a go pipe, it first waits for ``g`` there: the sandbox lets the command run only once
it knows the sandbox's init, so a cancelled start never leaves it running. Then it writes,
in order, on the report pipe it is given (one line each):

* ``pid N``: the command's pid, written before the command may run (it waits for the
  launcher's go), so forgeline can always kill what it started;
* ``started``, or ``failed`` once the command could not be executed (the reason goes to
  stderr, the launcher exits 127);
* ``exit STATUS UTIME STIME MAXRSS_KB``: the command's wait status and rusage; then the
  launcher exits with the command's exit code, or 128 + the signal that killed it.

The command gets a new session (it leads its own process group, which forgeline kills),
signals set to their defaults, and exactly the environment forgeline meant it to have
(Python's locale coercion may add ``LC_CTYPE`` to the launcher's own). The launcher
outlives a SIGTERM, to report the command's end; when it runs as a sandbox's first
process (pid 1), it also reaps the orphans handed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CommandExit", "Launch", "LaunchReport", "command_pidfd"]

# ``_signal`` is the C module under ``signal``, whose import (enum) would double the
# launcher's start-up time.
_SOURCE = r"""
import os, sys, _signal as signal
report, wait_for, lc_ctype, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
os.set_inheritable(report, False)
if wait_for != "-":
    if os.read(int(wait_for), 1) != b"g":
        os._exit(127)
    os.close(int(wait_for))
if lc_ctype == "-":
    os.environ.pop("LC_CTYPE", None)
else:
    os.environ["LC_CTYPE"] = lc_ctype[1:]
signal.signal(signal.SIGTERM, lambda signum, frame: None)
go_r, go_w = os.pipe()
err_r, err_w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        for signum in (signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        os.close(go_w)
        os.close(err_r)
        os.setsid()
        if os.read(go_r, 1) == b"g":
            os.execvp(args[0], args)
    except OSError as exc:
        os.write(err_w, str(exc).encode(errors="replace"))
    finally:
        os._exit(127)
os.close(go_r)
os.close(err_w)
def tell(line):
    try:
        os.write(report, line.encode())
    except OSError:
        pass
tell(f"pid {pid}\n")
try:
    os.write(go_w, b"g")
except OSError:
    pass
os.close(go_w)
error = b""
while chunk := os.read(err_r, 4096):
    error += chunk
if error:
    os.write(2, error + b"\n")
tell("failed\n" if error else "started\n")
while True:
    done, status, usage = os.wait4(-1, 0)
    if done == pid:
        break
tell(f"exit {status} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss}\n")
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""

# Far more than the launcher writes; a report that grows past it is not read further.
_MAX_REPORT = 4096


def _argv(
    args: Sequence[str], env: Mapping[str, str], report_fd: int, go_fd: int | None
) -> tuple[str, ...]:
    lc_ctype = "=" + env["LC_CTYPE"] if "LC_CTYPE" in env else "-"
    go = "-" if go_fd is None else str(go_fd)
    return (sys.executable, "-I", "-S", "-c", _SOURCE, str(report_fd), go, lc_ctype, *args)


@dataclass(frozen=True)
class CommandExit:
    """How the command ended (its wait status) and its rusage."""

    status: int
    cpu_s: float
    peak_memory_bytes: int

    @property
    def exit_code(self) -> int:
        """The exit code, or ``-signal`` if a signal killed it."""
        return os.waitstatus_to_exitcode(self.status)


def _parse_exit(words: list[str]) -> CommandExit | None:
    if len(words) != 4:
        return None
    try:
        status, maxrss = int(words[0]), int(words[3])
        utime, stime = float(words[1]), float(words[2])
        os.waitstatus_to_exitcode(status)
    except ValueError:
        return None
    if min(utime, stime, maxrss) < 0:
        return None
    return CommandExit(status, utime + stime, maxrss * 1024)  # kilobytes on Linux


class LaunchReport:
    """The read end of a launcher's report pipe, and what the launcher has said so far.

    ``read`` (any thread, never blocks) takes in what is there; the reaper calls it once
    the launcher is gone, when all of it is. ``wait_started`` waits on the event loop for
    the start; ``close`` (on the loop) ends both. The first line of each kind counts.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._buf = bytearray()
        self._eof = False
        self._lock = threading.Lock()
        self._watching: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.pid: int | None = None
        """The command's pid (its process group) once the launcher has forked it."""
        self.started: bool | None = None
        """True once the command was executed, False if it could not be; None: not yet."""
        self.exit: CommandExit | None = None
        """How the command ended, once the launcher has reaped it."""

    def read(self) -> None:
        """Take in what the launcher has written so far."""
        with self._lock:
            while self._fd is not None and not self._eof and len(self._buf) < _MAX_REPORT:
                try:
                    chunk = os.read(self._fd, _MAX_REPORT)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    self._eof = True
                    break
                self._buf += chunk
            *lines, rest = self._buf.split(b"\n")
            self._buf = bytearray(rest)
            for line in lines:
                self._take(line.decode("ascii", errors="replace").split())

    def _take(self, words: list[str]) -> None:
        match words:
            case ["pid", pid] if self.pid is None and pid.isdigit():
                self.pid = int(pid)
            case ["started" | "failed" as outcome] if self.started is None:
                self.started = outcome == "started"
            case ["exit", *rest] if self.exit is None:
                self.exit = _parse_exit(rest)

    @property
    def _settled(self) -> bool:
        return self.started is not None or self._eof or self._fd is None

    async def wait_started(self) -> bool:
        """Wait until the command was executed (True), or could not be, or the launcher
        went away first (False)."""
        self.read()
        if not self._settled and self._fd is not None:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter

            def readable() -> None:
                self.read()
                if self._settled and not waiter.done():
                    waiter.set_result(None)

            loop.add_reader(self._fd, readable)
            self._watching = loop
            try:
                await waiter
            finally:
                self._unwatch()
        return bool(self.started)

    def _unwatch(self) -> None:
        loop, self._watching = self._watching, None
        if loop is not None and self._fd is not None:
            loop.remove_reader(self._fd)  # a no-op once the loop is closed

    def close(self) -> None:
        """Stop reading: on the event loop, or from any thread once it is closed."""
        self._unwatch()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Launch:
    """The pipes between forgeline and one launcher it is about to start.

    ``argv`` runs the command behind the launcher; pass ``pass_fds`` to the process that
    becomes (or execs) it, then call ``spawned`` (or ``abandon`` if it could not be
    started). ``report`` is what the launcher says. ``gated``: the launcher waits for
    ``release(True)`` before it runs the command, and runs nothing after ``release(False)``.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str], *, gated: bool = False):
        report_r, report_w = os.pipe()
        self._theirs = [report_w]
        self._go: int | None = None
        go_r: int | None = None
        if gated:
            go_r, self._go = os.pipe()
            self._theirs.append(go_r)
        self._lock = threading.Lock()
        self.report = LaunchReport(report_r)
        self.argv = _argv(args, env, report_w, go_r)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return tuple(self._theirs)

    def spawned(self) -> None:
        """Close the launcher's ends here (it has its own copies now)."""
        for fd in self._theirs:
            os.close(fd)
        self._theirs = []

    def release(self, go: bool) -> None:
        """Let a gated launcher run the command (``go``), or make it exit without; once."""
        with self._lock:
            fd, self._go = self._go, None
        if fd is not None:
            if go:
                with contextlib.suppress(OSError):
                    os.write(fd, b"g")
            os.close(fd)

    def abandon(self) -> None:
        """Close everything: the launcher was not started."""
        self.spawned()
        self.release(False)
        self.report.close()


def command_pidfd(pid: int, launcher: int) -> int | None:
    """A pidfd for the command ``launcher`` started as ``pid``; None if ``pid`` is no
    longer its child (it was reaped, and the number may belong to another process now)."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        parent = int(stat.rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        parent = None
    if parent != launcher:
        os.close(fd)
        return None
    return fd
