"""``BwrapSandbox``: the ``ProcessSpawner`` that runs every child in a bubblewrap sandbox.

Each run is started by a small wrapper that waits until forgeline has put it into the run's
cgroup and set its rlimits, then becomes bwrap (see ``command``); without a cgroup, the
command runs behind the launcher as the sandbox's init (``sandbox.launcher``: the command's
own rusage). ``SandboxInstance`` follows it from there. ``run`` hands it to the run loop
both spawners share (``sandbox.child``), which also watches the total CPU time; ``start``
detaches (a preview) and may forward a port into the sandbox (see ``relay``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from forgeline.sandbox.bwrap.cgroups import CgroupSupport, RunCgroup, detect_cgroups
from forgeline.sandbox.bwrap.command import (
    TEMP_ARG_PREFIX,
    bwrap_command,
    bwrap_features,
    checked_workspace,
)
from forgeline.sandbox.bwrap.errors import SandboxError
from forgeline.sandbox.bwrap.instance import BwrapProcess, SandboxInstance
from forgeline.sandbox.bwrap.kernfs import read_text
from forgeline.sandbox.bwrap.limits import Mechanism, ResourceLimits, rlimits
from forgeline.sandbox.bwrap.relay import (
    FORWARD_PORT_ENV,
    PortForward,
    forwarded_port,
    relay_argv,
)
from forgeline.sandbox.child import run_child
from forgeline.sandbox.launcher import Launch
from forgeline.sandbox.spawner import (
    NO_MOUNTS,
    Bind,
    Mounts,
    ProcessResult,
    SpawnError,
    check_request,
    child_env,
)

__all__ = ["SHELL", "BwrapSandbox"]

SHELL = "/bin/sh"
# The first process waits for "go" on stdin (forgeline puts it into the cgroup and sets its
# rlimits in the meantime, so nothing it forks escapes them), then becomes bwrap.
_WRAPPER = 'read -r go && exec "$@" </dev/null'


class BwrapSandbox:
    """``ProcessSpawner`` that runs every child in a bubblewrap sandbox (see the package doc).

    ``extra_ro``/``extra_rw`` are host paths bound (at the same path) into every run;
    ``mounts`` on ``run``/``start`` adds a venv and more binds for one call. ``limits``
    are per run; ``use_cgroups=False`` forces the rlimit fallback. ``temp_arg_prefix``:
    argv items that are paths inside the system temp dir, under a directory whose name
    starts with it, get that directory bound read-write (forgeline's pytest runner puts
    its JUnit report there); None turns that off. ``forward_port_env``: when ``start`` is
    given that variable (the preview's ``PORT``), host 127.0.0.1:PORT is forwarded to the
    sandbox's own 127.0.0.1:PORT (the sandbox has no network of its own to listen on);
    None turns that off.
    ``protect_git``: the workspace's ``.git`` is read-only in the sandbox (forgeline runs git
    on it outside the sandbox, where planted hooks or config would run).
    """

    def __init__(
        self,
        *,
        extra_ro: Iterable[Path | str] = (),
        extra_rw: Iterable[Path | str] = (),
        limits: ResourceLimits | None = None,
        kill_grace: float = 2.0,
        use_cgroups: bool = True,
        temp_arg_prefix: str | None = TEMP_ARG_PREFIX,
        forward_port_env: str | None = FORWARD_PORT_ENV,
        protect_git: bool = True,
        bwrap: str | None = None,
    ) -> None:
        self.extra_ro = tuple(Path(p) for p in extra_ro)
        self.extra_rw = tuple(Path(p) for p in extra_rw)
        self.limits = limits if limits is not None else ResourceLimits()
        self.kill_grace = kill_grace
        self.use_cgroups = use_cgroups
        self.temp_arg_prefix = temp_arg_prefix
        self.forward_port_env = forward_port_env
        self.protect_git = protect_git
        self._bwrap = bwrap
        self._features: frozenset[str] | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def bwrap(self) -> str:
        path = self._bwrap or shutil.which("bwrap")
        if path is None:
            raise SandboxError(
                "bubblewrap (bwrap) is not installed: install it "
                "(Debian/Ubuntu: apt-get install bubblewrap)"
            )
        return path

    @property
    def features(self) -> frozenset[str]:
        if self._features is None:
            self._features = bwrap_features(self.bwrap)
        return self._features

    def cgroups(self) -> CgroupSupport:
        if not self.use_cgroups:
            return CgroupSupport(None, {}, "cgroups turned off (use_cgroups=False)")
        return detect_cgroups()

    @property
    def limits_mechanism(self) -> Mechanism:
        """How limits are enforced for runs started now: a cgroup version or ``rlimit``."""
        return self.cgroups().mechanism

    def command(
        self,
        args: Sequence[str],
        cwd: Path,
        binds: Sequence[Bind] = (),
        *,
        info_fd: int | None = None,
        as_pid_1: bool = False,
    ) -> tuple[list[str], list[int]]:
        """bwrap's argv for running ``args`` in ``cwd``, and the fds it must inherit (the
        caller closes them once bwrap has started); ``as_pid_1``: ``args`` is the
        sandbox's init (the launcher)."""
        workspace = checked_workspace(cwd)
        return bwrap_command(
            self.bwrap,
            self.features,
            args,
            cwd,
            workspace,
            (
                *(Bind(path, writable=True) for path in self.extra_rw),
                *(Bind(path) for path in self.extra_ro),
                *binds,
            ),
            tmp_bytes=self.limits.tmp_bytes,
            protect_git=self.protect_git,
            temp_arg_prefix=self.temp_arg_prefix,
            info_fd=info_fd,
            as_pid_1=as_pid_1,
        )

    @staticmethod
    def _env(env: Mapping[str, str] | None, mounts: Mounts) -> dict[str, str]:
        result = child_env(None, mounts)
        # The host's HOME and TMPDIR do not exist in the sandbox: its private /tmp does.
        result["HOME"] = "/tmp"
        result["TMPDIR"] = "/tmp"
        if env:
            result.update(env)
        return result

    @staticmethod
    def _check_program(program: str, cwd: Path, env: Mapping[str, str]) -> None:
        if "/" in program:
            path = Path(program) if program.startswith("/") else cwd / program
            if not path.exists():
                raise SpawnError(f"could not start {program!r}: no such file")
        elif shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            raise SpawnError(f"could not start {program!r}: not found on PATH")

    # ------------------------------------------------------------------ launching

    def _spawn(
        self,
        args: tuple[str, ...],
        cwd: Path,
        env: Mapping[str, str] | None,
        mounts: Mounts,
        *,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        program: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> SandboxInstance:
        full_env = self._env(env, mounts)
        self._check_program(program or args[0], cwd.resolve(), full_env)
        started = time.monotonic()
        support = self.cgroups()
        cgroup: RunCgroup | None = None
        mechanism: Mechanism = "rlimit"
        if support.version is not None:
            try:
                cgroup = RunCgroup(support, self.limits)
                mechanism = support.mechanism
            except OSError:
                cgroup = None  # this run falls back to rlimits; `usage.mechanism` says so
        info_r, info_w = os.pipe()
        go_r, go_w = os.pipe()
        # Without a cgroup the command runs behind the launcher, as the sandbox's init:
        # it reports the command's own rusage, and runs it only once ``ready`` knows the
        # init (a kill must be able to reach everything that runs).
        launch = Launch(args, full_env, gated=True) if cgroup is None else None
        fds: list[int] = []
        try:
            argv, fds = self.command(
                args if launch is None else launch.argv,
                cwd,
                mounts.all_binds(),
                info_fd=info_w,
                as_pid_1=launch is not None,
            )
            try:
                popen = subprocess.Popen(
                    [SHELL, "-c", _WRAPPER, "forgeline-sandbox", *argv],
                    cwd=cwd.resolve(),
                    env=full_env,
                    stdin=go_r,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(info_w, *fds, *pass_fds, *(launch.pass_fds if launch else ())),
                    start_new_session=True,
                )
            except OSError as exc:
                raise SpawnError(f"could not start bubblewrap for {args[0]!r}: {exc}") from exc
            try:
                for which, values in rlimits(self.limits, cgroup=cgroup is not None):
                    resource.prlimit(popen.pid, which, values)
                if cgroup is not None:
                    cgroup.add(popen.pid)
            except OSError as exc:
                popen.kill()
                popen.wait()
                for stream in (popen.stdout, popen.stderr):
                    if stream is not None:
                        stream.close()
                raise SandboxError(f"could not limit the sandbox for {args[0]!r}: {exc}") from exc
            os.write(go_w, b"go\n")
        except BaseException:
            os.close(info_r)
            if launch is not None:
                launch.abandon()
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for fd in (info_w, go_r, go_w, *fds):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if launch is not None:
                launch.spawned()
        return SandboxInstance(
            popen,
            cgroup,
            mechanism,
            info_r,
            started,
            cpu_seconds=self.limits.cpu_seconds,
            launch=launch,
        )

    # ------------------------------------------------------------------ protocol

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
        """Run in the sandbox to completion, ``timeout`` or a limit; nothing outlives it."""
        args = check_request(argv, cwd, max_output)
        sandboxed = self._spawn(
            args, cwd, env, mounts, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return await run_child(
            sandboxed, args, timeout=timeout, max_output=max_output, kill_grace=self.kill_grace
        )

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        log_path: Path,
    ) -> BwrapProcess:
        """Start in the sandbox, detached, output to ``log_path``; the caller stops it.

        Memory and pids limits apply as in ``run``; CPU time only per process (rlimit).
        """
        args = check_request(argv, cwd)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("wb")
        except OSError as exc:
            raise SpawnError(f"could not open the log {log_path}: {exc}") from exc
        port = forwarded_port(env, self.forward_port_env)
        forward: PortForward | None = None
        with log:
            if port is None:
                sandboxed = self._spawn(
                    args, cwd, env, mounts, stdout=log, stderr=subprocess.STDOUT
                )
            else:
                host_end, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                forward = PortForward(port, host_end)
                try:
                    await forward.listen()
                    sandboxed = self._spawn(
                        relay_argv(sandbox_end.fileno(), port, args),
                        cwd,
                        env,
                        mounts,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        program=args[0],
                        pass_fds=(sandbox_end.fileno(),),
                    )
                except BaseException:
                    forward.close()
                    raise
                finally:
                    sandbox_end.close()
                sandboxed.on_exit.append(forward.close)
        try:
            ok = await sandboxed.ready()
        except BaseException:
            sandboxed.kill_now()
            if forward is not None:
                forward.close()
            raise
        if not ok:
            await sandboxed.terminate(0)
            if forward is not None:
                forward.close()
            raise sandboxed.start_error(args[0], (read_text(log_path) or "").strip())
        return BwrapProcess(sandboxed, args, log_path)
