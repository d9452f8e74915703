"""Run untrusted programs as child processes behind one interface.

Everything the tester and the deployer run (the workspace's tests, the produced program) is
untrusted code. ``ProcessSpawner`` is the one interface they use; ``LocalSpawner`` is the
first backend: plain child processes, each in its own session and process group, with a
scrubbed environment, bounded output and a hard timeout that kills the whole group.

``LocalSpawner`` is *not* a security boundary: the child runs as this user, sees this file
system and the network. The sandbox (bubblewrap namespaces, cgroup limits on memory, CPU
and pids, no network) is the other backend of the same protocol (``sandbox.bwrap``).

Every finished ``run`` says what it used (``ProcessResult.usage``, a ``ResourceUsage``):
``LocalSpawner`` from the kernel's rusage of the child it reaps, the sandbox from its
cgroup or sampling.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypedDict, runtime_checkable

from forgeline.errors import ForgelineError

__all__ = [
    "ENV_ALLOWLIST",
    "LocalProcess",
    "LocalSpawner",
    "Mechanism",
    "OutputFields",
    "ProcessResult",
    "ProcessSpawner",
    "ResourceUsage",
    "SpawnError",
    "SpawnedProcess",
    "TailBuffer",
    "check_request",
    "child_env",
    "output_fields",
    "pump",
    "stop_process_group",
    "tail_text",
]

#: Variables a child inherits from this process (when set); everything else is dropped.
ENV_ALLOWLIST: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")

#: Variables every child gets: no bytecode files in the workspace, unbuffered output.
ENV_FIXED: Mapping[str, str] = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}

_POLL_S = 0.05
_READ_CHUNK = 64 * 1024
# After the group is killed, how long to wait for the output pipes to reach EOF; a process
# that escaped the group could hold them open forever.
_DRAIN_S = 2.0


class SpawnError(ForgelineError):
    """A process could not be started or signalled (bad argv, missing program or cwd)."""


# --------------------------------------------------------------------------- results


def tail_text(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text``, with a marker line when it was cut."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if len(text) <= limit:
        return text
    return (
        f"[... {len(text) - limit} earlier characters truncated ...]\n" + text[len(text) - limit :]
    )


Mechanism = Literal["cgroup-v1", "cgroup-v2", "rlimit", "none"]


@dataclass(frozen=True)
class ResourceUsage:
    """What a run used, and how its limits were enforced.

    ``mechanism`` is ``cgroup-v1``/``cgroup-v2`` (the sandbox: tree-wide limits and exact
    numbers from the cgroup), ``rlimit`` (the sandbox without cgroups: per-process limits;
    CPU time and the peak of the summed resident memory are sampled every 100 ms by
    ``run``, so they are approximate and may miss the last moments; ``start`` only has
    bubblewrap's own rusage) or ``none`` (``LocalSpawner``: no limits; CPU time and peak
    memory are the kernel's rusage of the child, which includes the descendants it waited
    for, the largest of their peaks counting as the peak). ``limits_hit`` names the limits
    the run ran into: ``memory`` (the OOM killer fired), ``pids``, ``cpu``.
    """

    mechanism: Mechanism
    wall_s: float
    cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_pids: int | None = None
    limits_hit: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessResult:
    """What one finished (or killed) run produced.

    ``stdout`` and ``stderr`` hold at most ``max_output`` characters each: the tail, preceded
    by a marker line when earlier output was dropped (``*_truncated`` says so too).
    ``exit_code`` is negative (``-signal``) when the process was killed by a signal and
    ``None`` only if it could not be reaped. ``usage`` is what it used (both spawners of
    this package always set it).
    """

    argv: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: ResourceUsage | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout followed by stderr (each already bounded)."""
        if self.stdout and self.stderr and not self.stdout.endswith("\n"):
            return f"{self.stdout}\n{self.stderr}"
        return self.stdout + self.stderr


class TailBuffer:
    """Keeps the last bytes of a stream, enough for ``max_chars`` characters of UTF-8."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._keep = max_chars * 4 + 4
        self._buf = bytearray()
        self._dropped = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self._keep:
            del self._buf[: len(self._buf) - self._keep]
            self._dropped = True

    def text(self) -> tuple[str, bool]:
        raw = bytes(self._buf)
        dropped = self._dropped
        if len(raw) > self._keep:
            raw = raw[len(raw) - self._keep :]
            dropped = True
        text = raw.decode("utf-8", errors="replace")
        if dropped or len(text) > self._max_chars:
            kept = text[len(text) - self._max_chars :] if self._max_chars else ""
            marker = "[... earlier output truncated ...]\n"
            return marker + kept, True
        return text, False


class OutputFields(TypedDict):
    """``ProcessResult``'s output fields, as ``output_fields`` gives them."""

    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool


def output_fields(out: TailBuffer, err: TailBuffer) -> OutputFields:
    """The bounded stdout and stderr of a run (from its two buffers), and whether each was
    cut: ``ProcessResult(..., **output_fields(out, err))``."""
    stdout, stdout_cut = out.text()
    stderr, stderr_cut = err.text()
    return OutputFields(
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_cut,
        stderr_truncated=stderr_cut,
    )


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class SpawnedProcess(Protocol):
    """A long-running child (a preview server) started detached, its output in a log."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal), else None."""
        ...

    async def wait(self) -> int: ...

    async def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM the whole process group, SIGKILL it after ``timeout``; reap the leader."""
        ...


class ProcessSpawner(Protocol):
    """Runs argv lists (never a shell command line) for the tester and the deployer."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        """Run to completion or ``timeout``; whatever is left of its group is killed."""
        ...

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        log_path: Path,
    ) -> SpawnedProcess:
        """Start detached, stdout and stderr going to ``log_path``; the caller stops it."""
        ...


# --------------------------------------------------------------------------- helpers


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child gets: the allowlist from ours, the fixed ones, then ``env``."""
    result = {name: os.environ[name] for name in ENV_ALLOWLIST if name in os.environ}
    result.update(ENV_FIXED)
    if env:
        result.update(env)
    return result


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes):
        raise SpawnError(
            f"argv must be a list of arguments, not a string ({argv!r}): "
            "forgeline never runs a shell command line; split it into its arguments"
        )
    args = tuple(argv)
    if not args:
        raise SpawnError("argv is empty: there is no program to run")
    for arg in args:
        if not isinstance(arg, str):
            raise SpawnError(f"argv items must be strings, got {arg!r} in {args!r}")
        if "\0" in arg:
            raise SpawnError(f"argv item {arg!r} contains a NUL byte")
    return args


def _check_cwd(cwd: Path) -> None:
    if not cwd.is_dir():
        raise SpawnError(f"working directory {cwd} does not exist or is not a directory")


def check_request(argv: Sequence[str], cwd: Path, max_output: int | None = None) -> tuple[str, ...]:
    """``argv`` as a tuple, once it (a list of strings, not a shell line), ``cwd`` (an
    existing directory) and ``max_output`` (when given, >= 0) have been checked."""
    args = _check_argv(argv)
    _check_cwd(cwd)
    if max_output is not None and max_output < 0:
        raise ValueError("max_output must be >= 0")
    return args


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid`` from /proc, or None if unknown/gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    # "pid (comm) S ppid pgrp ...": comm may contain spaces and parentheses.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 3:
        return None
    try:
        return fields[0], int(fields[2])
    except ValueError:
        return None


def _group_alive(pgid: int) -> bool:
    """Whether the process group has a member that is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    try:
        entries = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return True
    for name in entries:
        state = _proc_state(int(name))
        if state is not None and state[1] == pgid and state[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _check_pgid(pgid: int) -> None:
    if pgid <= 1:
        raise SpawnError(f"refusing to signal process group {pgid}")
    if pgid == os.getpgrp():
        raise SpawnError(f"refusing to signal forgeline's own process group {pgid}")


async def _terminate_group(pgid: int, grace: float) -> bool:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL. False if it was gone."""
    _check_pgid(pgid)
    if not _group_alive(pgid):
        return False
    if not _signal_group(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        if not _group_alive(pgid):
            return True
    _signal_group(pgid, signal.SIGKILL)
    for _ in range(40):
        if not _group_alive(pgid):
            break
        await asyncio.sleep(_POLL_S)
    return True


def stop_process_group(pid: int, grace: float = 3.0) -> bool:
    """Stop a detached process group by its leader's pid (for ``forgeline stop``).

    SIGTERM to the group, up to ``grace`` seconds for it to go, then SIGKILL. Works from a
    process other than the one that started it. Returns False if the group was already gone.
    """
    _check_pgid(pid)
    if not _group_alive(pid):
        return False
    try:
        if not _signal_group(pid, signal.SIGTERM):
            return False
    except PermissionError as exc:
        raise SpawnError(f"not allowed to signal process group {pid}: {exc}") from exc
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(_POLL_S)
        if not _group_alive(pid):
            return True
    _signal_group(pid, signal.SIGKILL)
    for _ in range(40):
        if not _group_alive(pid):
            break
        time.sleep(_POLL_S)
    return True


async def pump(stream: asyncio.StreamReader | None, sink: TailBuffer) -> None:
    """Read ``stream`` (if any) to its end into ``sink``."""
    if stream is None:
        return
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return
        sink.feed(chunk)


def _kill_now(proc: asyncio.subprocess.Process) -> None:
    """Last resort (cancellation): SIGKILL the group and the leader, no waiting."""
    with contextlib.suppress(ProcessLookupError, PermissionError, SpawnError):
        _check_pgid(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _stream_protocol(reader: asyncio.StreamReader) -> Callable[[], asyncio.Protocol]:
    return lambda: asyncio.StreamReaderProtocol(reader)


def _popen(
    args: tuple[str, ...], cwd: Path, env: Mapping[str, str] | None
) -> subprocess.Popen[bytes]:
    # Popen rather than asyncio's subprocess: our own thread reaps it with wait4, which
    # gives the child's rusage (CPU time, peak memory) along with its status.
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise SpawnError(f"could not start {args[0]!r}: {exc}") from exc


class _ReapedChild:
    """A ``Popen`` child that a thread of ours reaps with ``wait4``, keeping its rusage.

    Signals to the child itself go through a pidfd where the kernel has them, so a pid
    that was reaped and reused is never hit.
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, started: float
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.started = started
        self.ended: float | None = None
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self._loop = loop
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(popen.pid)
        self.exited: asyncio.Future[None] = loop.create_future()
        name = f"forgeline-reaper-{self.pid}"
        threading.Thread(target=self._reap, name=name, daemon=True).start()

    def _reap(self) -> None:
        status: int | None = None
        rusage: resource.struct_rusage | None = None
        with contextlib.suppress(ChildProcessError):
            _, status, rusage = os.wait4(self.pid, 0)
        self.ended = time.monotonic()
        self.status, self.rusage = status, rusage
        if status is not None:
            self.popen.returncode = os.waitstatus_to_exitcode(status)

        def deliver() -> None:
            if not self.exited.done():
                self.exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(deliver)

    @property
    def exit_code(self) -> int | None:
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def signal(self, sig: signal.Signals) -> None:
        if self.status is not None:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def kill_now(self) -> None:
        """Last resort (cancellation): SIGKILL the group and the leader, no waiting."""
        with contextlib.suppress(ProcessLookupError, PermissionError, SpawnError):
            _check_pgid(self.pid)
            os.killpg(self.pid, signal.SIGKILL)
        self.signal(signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

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


# --------------------------------------------------------------------------- local


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
            await _terminate_group(self._proc.pid, timeout)
            if self._proc.returncode is None:
                # The leader left its group (setpgid): signal it directly.
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            try:
                return await asyncio.wait_for(self._proc.wait(), _DRAIN_S)
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
    ``PYTHONUNBUFFERED=1``, then whatever ``env`` the caller passes. Secrets in our
    environment (API keys, database URLs) never reach the child.

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
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        args = check_request(argv, cwd, max_output)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        popen = _popen(args, cwd, env)
        child = _ReapedChild(popen, loop, started)

        out, err = TailBuffer(max_output), TailBuffer(max_output)
        transports: list[asyncio.BaseTransport] = []
        readers: list[asyncio.Task[None]] = []
        timed_out = False
        try:
            for pipe, sink in ((popen.stdout, out), (popen.stderr, err)):
                reader = asyncio.StreamReader(loop=loop)
                transport, _ = await loop.connect_read_pipe(_stream_protocol(reader), pipe)
                transports.append(transport)
                readers.append(asyncio.create_task(pump(reader, sink)))
            try:
                await asyncio.wait_for(asyncio.shield(child.exited), timeout)
            except TimeoutError:
                timed_out = True
            # Timed out: kill the group. Exited: kill whatever it left running.
            await _terminate_group(popen.pid, self.kill_grace)
            if child.status is None:
                # The leader left its group (setpgid): signal it directly.
                child.signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.exited), _DRAIN_S)
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except BaseException:
            child.kill_now()
            for task in readers:
                task.cancel()
            raise
        finally:
            # Closing the transports closes the pipes, even ones a process that escaped
            # the group still holds open.
            for each in transports:
                each.close()
            for stream in (popen.stdout, popen.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
            child.close()

        output = output_fields(out, err)
        return ProcessResult(
            argv=args,
            exit_code=child.exit_code,
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
            usage=child.usage(),
            **output,
        )

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        log_path: Path,
    ) -> LocalProcess:
        args = check_request(argv, cwd)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    cwd=cwd,
                    env=child_env(env),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise SpawnError(f"could not start {args[0]!r}: {exc}") from exc
        return LocalProcess(proc, args, log_path)
