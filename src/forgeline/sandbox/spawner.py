"""Run untrusted programs as child processes behind one interface: the spawner port.

Everything the tester and the deployer run (the workspace's tests, the produced program) is
untrusted code. ``ProcessSpawner`` is the one interface they use, with two backends:
``LocalSpawner`` (``sandbox.local``: plain child processes, each in its own session and
process group, with a scrubbed environment, bounded output and a hard timeout that kills
the whole group) and ``BwrapSandbox`` (``sandbox.bwrap``: the same, inside bubblewrap
namespaces with cgroup limits and no network). Both share one run loop (``sandbox.child``).

A caller says what a run needs of the host with ``Mounts``: the Python virtual
environment it runs with (its ``bin`` first on ``PATH``, ``VIRTUAL_ENV`` set) and host
paths to make visible. Every backend honours what it can: the sandbox binds them, the plain
backend sees the whole file system anyway. So no caller needs to know which backend it has.

Every finished ``run`` says what it used (``ProcessResult.usage``, a ``ResourceUsage``):
the sandbox from its cgroup; otherwise (``LocalSpawner``, the sandbox without cgroups) from
the kernel's rusage of the command, which the launcher (``sandbox.launcher``) reaps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from forgeline.errors import ForgelineError

__all__ = [
    "ENV_ALLOWLIST",
    "NO_MOUNTS",
    "Bind",
    "Mechanism",
    "Mounts",
    "ProcessResult",
    "ProcessSpawner",
    "ResourceUsage",
    "SpawnError",
    "SpawnedProcess",
    "check_request",
    "child_env",
    "tail_text",
]

#: Variables a child inherits from this process (when set); everything else is dropped.
ENV_ALLOWLIST: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")

#: Variables every child gets: no bytecode files in the workspace, unbuffered output.
ENV_FIXED: Mapping[str, str] = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


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
    numbers from the cgroup), ``rlimit`` (the sandbox without cgroups: per-process limits)
    or ``none`` (``LocalSpawner``: no limits). With ``rlimit`` and ``none``, CPU time and
    peak memory are the kernel's rusage of the command, which includes the descendants it
    waited for (the largest of their peaks counting as the peak), reported by the launcher
    that started it; the peak includes up to the launcher's few MB (a command that uses
    less shows about that), never forgeline's own memory. A run killed before the launcher
    could report has none of it (``None``), except that ``run`` in the sandbox also samples
    its processes every 100 ms (CPU time, and the peak of their summed resident memory)
    and reports the larger numbers. ``limits_hit`` names the limits the run ran into:
    ``memory`` (the OOM killer fired), ``pids``, ``cpu``.
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
    ``None`` only if it could not be reaped; a program killed by a signal *inside* the
    sandbox shows as ``128 + signal`` (bubblewrap reports it the way a shell does).
    ``usage`` is what it used (every spawner of this package sets it); ``duration_s`` is
    its ``wall_s``.
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


# --------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class Bind:
    """A host path made visible to a run (at the same path unless ``dest`` is given)."""

    source: Path
    dest: Path | None = None
    writable: bool = False


@dataclass(frozen=True)
class Mounts:
    """What a run needs of the host besides its working directory, for any backend.

    ``venv``: the Python virtual environment the run uses. Every backend puts its ``bin``
    first on ``PATH`` and sets ``VIRTUAL_ENV`` (so a ``python`` the program starts is the
    venv's too); the sandbox binds it at its own path, read-only unless ``venv_writable``
    (an install into it). ``binds``: more host paths the run needs to see (the sandbox
    binds them after the workspace; ``LocalSpawner`` sees the whole file system and needs
    none of them, and cannot move a path to another ``dest``).
    """

    venv: Path | None = None
    venv_writable: bool = False
    binds: tuple[Bind, ...] = ()

    @property
    def python(self) -> str:
        """The interpreter for a ``python`` command: the venv's, else forgeline's own."""
        return str(self.venv / "bin" / "python") if self.venv is not None else sys.executable

    def all_binds(self) -> tuple[Bind, ...]:
        """The venv (when there is one) and then ``binds``."""
        if self.venv is None:
            return self.binds
        return (Bind(self.venv, writable=self.venv_writable), *self.binds)

    def with_binds(self, *binds: Bind) -> Mounts:
        """These mounts with ``binds`` added."""
        return Mounts(self.venv, self.venv_writable, (*self.binds, *binds))

    def env(self, path: str) -> dict[str, str]:
        """``VIRTUAL_ENV`` and ``PATH`` (the venv's ``bin``, then ``path``) for a run in
        the venv; nothing without one."""
        if self.venv is None:
            return {}
        return {"VIRTUAL_ENV": str(self.venv), "PATH": f"{self.venv / 'bin'}{os.pathsep}{path}"}


#: A run that needs nothing but its working directory.
NO_MOUNTS = Mounts()


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
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        """Run to completion or ``timeout``; whatever is left of it is killed. Cancelling
        the awaiting task kills it all at once, waits briefly for it to be reaped and
        re-raises ``CancelledError``."""
        ...

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        log_path: Path,
    ) -> SpawnedProcess:
        """Start detached, stdout and stderr going to ``log_path``; the caller stops it."""
        ...


# --------------------------------------------------------------------------- helpers


def child_env(env: Mapping[str, str] | None = None, mounts: Mounts = NO_MOUNTS) -> dict[str, str]:
    """The environment a child gets: the allowlist from ours, the fixed ones, the venv's
    ``VIRTUAL_ENV`` and ``PATH`` (``mounts``), then ``env``."""
    result = {name: os.environ[name] for name in ENV_ALLOWLIST if name in os.environ}
    result.update(ENV_FIXED)
    result.update(mounts.env(result.get("PATH", os.defpath)))
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


def check_request(argv: Sequence[str], cwd: Path, max_output: int | None = None) -> tuple[str, ...]:
    """``argv`` as a tuple, once it (a list of strings, not a shell line), ``cwd`` (an
    existing directory) and ``max_output`` (when given, >= 0) have been checked."""
    args = _check_argv(argv)
    if not cwd.is_dir():
        raise SpawnError(f"working directory {cwd} does not exist or is not a directory")
    if max_output is not None and max_output < 0:
        raise ValueError("max_output must be >= 0")
    return args
