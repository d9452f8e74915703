"""Run untrusted programs inside a bubblewrap sandbox: the isolating ``ProcessSpawner``.

``BwrapSandbox`` has the same ``run``/``start`` interface as ``LocalSpawner`` and reuses its
helpers (argv checks, the environment allowlist, bounded output), but every child runs in a
``bwrap`` sandbox:

* **Namespaces** (``--unshare-all``): its own mount, pid, network (only a private loopback),
  IPC, UTS and cgroup namespaces, and a user namespace (``--unshare-user``) in which it is
  ``SANDBOX_UID``/``SANDBOX_GID`` with no capabilities (``--cap-drop ALL``, no-new-privs)
  and may not make further user namespaces (``--disable-userns``).
* **File system**: a fresh tmpfs root made read-only after setup. ``/usr`` (and ``/bin``,
  ``/lib*`` as on the host), a few harmless ``/etc`` files and the Python installation
  (``sys.prefix``/``sys.base_prefix``) are bound read-only; ``/proc`` is the sandbox's own
  (with ``/proc/sys`` and other kernel knobs read-only, root-only files masked), ``/dev`` a
  minimal private one, ``/tmp`` a private size-capped tmpfs. The workspace (``cwd``) is the
  only writable host path (its ``.git`` read-only), plus what the caller adds
  (``extra_rw``, ``binds``) and forgeline's own ``forgeline-*`` scratch directories named
  in argv (the pytest runner's JUnit report directory).
* **Network**: none. ``start`` with ``PORT`` in its environment (a web preview) forwards
  host 127.0.0.1:PORT to the app on the sandbox's own loopback through a relay.
* **Processes**: bwrap's init is pid 1 of the sandbox's pid namespace; when it dies the
  kernel kills everything inside, so daemons (``setsid``, double forks) die with the run.
  ``--die-with-parent`` ties the sandbox to forgeline itself.
* **Limits**: memory, pids and (total) CPU time through a per-run cgroup when cgroups are
  writable (v1 controllers or a delegated v2 subtree), else rlimits (``RLIMIT_AS``,
  ``RLIMIT_NPROC``); ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE`` always.

**Identity.** bubblewrap maps the one uid inside (``SANDBOX_UID``) to the uid that runs
forgeline outside. So files the sandbox writes into the workspace belong on the host to
forgeline's user, and a workspace forgeline owns (root's, say) stays writable without chown
or ACLs, while inside the process is not root and holds no capability: it
cannot remount, mount or change ownership, and the host's root-owned files outside its
binds do not exist for it. Host files under a *bound* path owned by forgeline's user are
as readable to it as to forgeline (hence only harmless ``/etc`` files are bound, never
``/etc/ssl/private``); kernel checks on the uid rather than on capabilities would treat it
as root (hence the read-only ``/proc/sys``); and when forgeline runs as root the kernel
does not apply ``RLIMIT_NPROC`` to it, so the pids limit needs cgroups there. Running
forgeline as an unprivileged user avoids all of that. See docs/security.md.

``sandbox_available()`` says whether all this works on this machine (None) or why not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from forgeline.sandbox.spawner import (
    ProcessResult,
    SpawnError,
    _check_argv,
    _check_cwd,
    _pump,
    _TailBuffer,
    child_env,
)

__all__ = [
    "SANDBOX_GID",
    "SANDBOX_UID",
    "Bind",
    "BwrapProcess",
    "BwrapSandbox",
    "CgroupSupport",
    "ResourceLimits",
    "ResourceUsage",
    "SandboxError",
    "SandboxResult",
    "detect_cgroups",
    "sandbox_available",
]

#: The uid and gid the sandboxed program has inside its user namespace (not 0, not the
#: kernel's overflow id 65534, so ``ls -l`` inside tells its own files from unmapped ones).
SANDBOX_UID = 1000
SANDBOX_GID = 1000

#: ``start`` with this variable in ``env`` forwards host 127.0.0.1:$PORT into the sandbox.
FORWARD_PORT_ENV = "PORT"

#: Directories directly under the system temp dir whose names start with this are
#: forgeline's own scratch directories; argv paths inside them are bound read-write.
TEMP_ARG_PREFIX = "forgeline-"

_SH = "/bin/sh"
# The first process waits for "go" on stdin (forgeline puts it into the cgroup and sets its
# rlimits in the meantime, so nothing it forks escapes them), then becomes bwrap.
_WRAPPER = 'read -r go && exec "$@" </dev/null'
_CGROUP_PREFIX = "forgeline-"
_KILL_POLL_S = 0.02
_DRAIN_S = 2.0
_INFO_TIMEOUT_S = 30.0
_CPU_POLL_S = 0.1
_PROBE_TIMEOUT_S = 20.0
# Cgroups named forgeline-* older than this with nothing in them are left-overs; removed.
_STALE_CGROUP_S = 300.0

_ETC_FILES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "ssl/certs",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "protocols",
    "services",
)
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The sandboxed uid is forgeline's uid on the host (root, when forgeline runs as root), and
# some kernel checks look at that uid rather than at capabilities: the sysctl files in
# /proc/sys (core_pattern!) and a few root-only /proc files would be writable or readable.
# So these are made read-only, and those masked with /dev/null or an empty tmpfs.
_PROC_READ_ONLY = (
    "sys",
    "sysrq-trigger",
    "irq",
    "bus",
    "fs",
    "pressure",
    "mtrr",
    "acpi",
    "scsi",
    "driver",
)
_PROC_MASKED = (
    "kcore",
    "kmsg",
    "kallsyms",
    "slabinfo",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "timer_list",
    "sched_debug",
    "vmallocinfo",
    "pagetypeinfo",
    "iomem",
    "ioports",
    "keys",
    "key-users",
    "latency_stats",
    "tty/driver",
)
# Workspaces that are (or sit inside) these would expose or shadow the system.
_FORBIDDEN_WORKSPACES = ("/usr", "/etc", "/proc", "/sys", "/dev", "/boot", "/bin", "/sbin")


class SandboxError(SpawnError):
    """The sandbox could not be set up for a run (bubblewrap failed, a bad bind)."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ResourceLimits:
    """Limits for one sandboxed run (None: not limited).

    ``memory_bytes``, ``pids`` and ``cpu_seconds`` are for the whole process tree with
    cgroups, per process with rlimits. ``cpu_cores`` caps the CPU rate (cgroups only).
    ``tmp_bytes`` sizes the private ``/tmp``; ``file_bytes`` is the largest file it may
    write (``RLIMIT_FSIZE``).
    """

    memory_bytes: int | None = 2 * 1024**3
    pids: int | None = 256
    cpu_seconds: float | None = 900.0
    cpu_cores: float | None = None
    tmp_bytes: int | None = 512 * 1024**2
    file_bytes: int | None = 1024**3

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "pids", "cpu_seconds", "cpu_cores", "tmp_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"ResourceLimits.{name} must be positive, got {value!r}")


Mechanism = Literal["cgroup-v1", "cgroup-v2", "rlimit"]


@dataclass(frozen=True)
class ResourceUsage:
    """What a sandboxed run used, and how its limits were enforced.

    ``mechanism`` is ``cgroup-v1``/``cgroup-v2`` (tree-wide limits and exact numbers from the
    cgroup) or ``rlimit`` (per-process limits; CPU time and the peak of the summed resident
    memory are sampled every 100 ms by ``run``, so they are approximate and may miss the
    last moments; ``start`` only has bubblewrap's own rusage). ``limits_hit`` names the
    limits the run ran into: ``memory`` (the OOM killer fired), ``pids``, ``cpu``.
    """

    mechanism: Mechanism
    wall_s: float
    cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_pids: int | None = None
    limits_hit: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxResult(ProcessResult):
    """A ``ProcessResult`` with the run's resource usage.

    A program killed by a signal *inside* the sandbox shows as ``128 + signal`` (bubblewrap
    reports it the way a shell does); a run forgeline killed (timeout, CPU limit) has
    ``-signal`` like ``LocalSpawner``.
    """

    usage: ResourceUsage | None = None


@dataclass(frozen=True)
class Bind:
    """A host path made visible in the sandbox (at the same path unless ``dest`` is given)."""

    source: Path
    dest: Path | None = None
    writable: bool = False


# --------------------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class CgroupSupport:
    """Where per-run cgroups can be made: ``controllers`` maps a controller to the parent
    directory for them. ``version`` is None (with ``reason``) when cgroups are not usable."""

    version: Literal["v1", "v2"] | None
    controllers: Mapping[str, Path]
    reason: str | None = None

    @property
    def mechanism(self) -> Mechanism:
        if self.version == "v1":
            return "cgroup-v1"
        if self.version == "v2":
            return "cgroup-v2"
        return "rlimit"


_V1_WANTED = ("memory", "pids", "cpu", "cpuacct", "freezer")
_V1_REQUIRED = ("memory", "pids")
_cgroup_cache: CgroupSupport | None = None
_cgroup_lock = threading.Lock()


def _write(path: Path, value: str) -> None:
    with path.open("w") as fh:
        fh.write(value)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (memory.events, cpu.stat, pids.events, memory.oom_control)."""
    result: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                result[parts[0]] = int(parts[1])
    return result


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    result: dict[str, str] = {}
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            result[""] = path
        for name in controllers.split(","):
            result[name] = path
    return result


def _probe_dirs(dirs: Iterable[Path]) -> str | None:
    """Make and remove a probe cgroup in each dir; the reason if that is not possible."""
    name = f"{_CGROUP_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for parent in dirs:
        probe = parent / name
        try:
            probe.mkdir()
        except OSError as exc:
            return f"cannot create a cgroup under {parent}: {exc.strerror or exc}"
        with contextlib.suppress(OSError):
            probe.rmdir()
    return None


def _detect_v2(root: Path) -> CgroupSupport:
    own = _own_cgroups().get("")
    if own is None:
        return CgroupSupport(None, {}, "this process has no cgroup v2 path")
    base = root / own.lstrip("/")
    available = set((_read(base / "cgroup.controllers") or "").split())
    missing = [name for name in ("memory", "pids") if name not in available]
    if missing:
        return CgroupSupport(
            None, {}, f"cgroup v2 controllers {missing} are not delegated to {base}"
        )
    enabled = set((_read(base / "cgroup.subtree_control") or "").split())
    for name in ("memory", "pids", "cpu"):
        if name in enabled or name not in available:
            continue
        try:
            _write(base / "cgroup.subtree_control", f"+{name}")
        except OSError as exc:
            if name == "cpu":
                continue
            return CgroupSupport(
                None,
                {},
                f"cannot enable the {name} controller in {base}/cgroup.subtree_control "
                f"({exc.strerror or exc}); run forgeline in a delegated cgroup "
                "(e.g. systemd-run --scope -p Delegate=yes)",
            )
    problem = _probe_dirs([base])
    if problem:
        return CgroupSupport(None, {}, problem)
    enabled = set((_read(base / "cgroup.subtree_control") or "").split())
    controllers: dict[str, Path] = {
        name: base for name in ("memory", "pids", "cpu") if name in enabled
    }
    controllers["freezer"] = base  # cgroup.freeze is core in v2
    return CgroupSupport("v2", controllers)


def _detect_v1(own: dict[str, str]) -> CgroupSupport:
    dirs: dict[str, Path] = {}
    for line in (_read(Path("/proc/self/mountinfo")) or "").splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        mount_root, mount_point = fields[3], fields[4]
        for name in set(tail[2].split(",")) & set(_V1_WANTED):
            path = own.get(name)
            if path is None or name in dirs:
                continue
            if mount_root != "/" and (path + "/").startswith(mount_root.rstrip("/") + "/"):
                path = path[len(mount_root.rstrip("/")) :]
            candidate = Path(mount_point) / path.lstrip("/")
            if candidate.is_dir():
                dirs[name] = candidate
    missing = [name for name in _V1_REQUIRED if name not in dirs]
    if missing:
        return CgroupSupport(None, {}, f"no cgroup v1 {' and '.join(missing)} controller mounted")
    problem = _probe_dirs(sorted(set(dirs.values())))
    if problem:
        return CgroupSupport(None, {}, problem)
    return CgroupSupport("v1", dirs)


def detect_cgroups(*, refresh: bool = False) -> CgroupSupport:
    """How per-run cgroups can be made here (cached; ``refresh`` looks again).

    Pure v2 (``/sys/fs/cgroup/cgroup.controllers``) needs a delegated cgroup whose
    ``subtree_control`` forgeline may set; v1 (or a hybrid) needs writable ``memory`` and
    ``pids`` hierarchies (``cpu``, ``cpuacct`` and ``freezer`` are used when present).
    """
    global _cgroup_cache
    with _cgroup_lock:
        if _cgroup_cache is None or refresh:
            if not sys.platform.startswith("linux"):
                _cgroup_cache = CgroupSupport(None, {}, "cgroups need Linux")
            else:
                root = Path("/sys/fs/cgroup")
                if (root / "cgroup.controllers").is_file():
                    _cgroup_cache = _detect_v2(root)
                else:
                    _cgroup_cache = _detect_v1(_own_cgroups())
        return _cgroup_cache


class _RunCgroup:
    """The cgroup (one directory per v1 hierarchy) of one sandboxed run."""

    def __init__(self, support: CgroupSupport, limits: ResourceLimits) -> None:
        self.version = support.version
        name = f"{_CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.name = name
        self.dirs: dict[str, Path] = {}
        made: list[Path] = []
        try:
            for controller, parent in support.controllers.items():
                path = parent / name
                if path not in made:
                    _sweep_stale(parent)
                    path.mkdir()
                    made.append(path)
                self.dirs[controller] = path
            self._limit(limits)
        except OSError:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        self._unique = made

    def _limit(self, limits: ResourceLimits) -> None:
        mem, pids, cpu = self.dirs.get("memory"), self.dirs.get("pids"), self.dirs.get("cpu")
        if self.version == "v1":
            if mem is not None and limits.memory_bytes is not None:
                _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    with contextlib.suppress(OSError):
                        _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if pids is not None and limits.pids is not None:
                # + the wrapper that becomes bwrap, and bwrap's init.
                _write(pids / "pids.max", str(limits.pids + 2))
            if cpu is not None and limits.cpu_cores is not None:
                _write(cpu / "cpu.cfs_period_us", "100000")
                _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu_cores * 100000))))
        else:
            if mem is not None and limits.memory_bytes is not None:
                _write(mem / "memory.max", str(limits.memory_bytes))
                if (mem / "memory.swap.max").exists():
                    with contextlib.suppress(OSError):
                        _write(mem / "memory.swap.max", "0")
            if pids is not None and limits.pids is not None:
                _write(pids / "pids.max", str(limits.pids + 2))
            if cpu is not None and limits.cpu_cores is not None:
                _write(cpu / "cpu.max", f"{max(1000, int(limits.cpu_cores * 100000))} 100000")

    def add(self, pid: int) -> None:
        for path in self._unique:
            _write(path / "cgroup.procs", str(pid))

    def procs(self) -> set[int]:
        result: set[int] = set()
        for path in self._unique:
            for line in (_read(path / "cgroup.procs") or "").split():
                with contextlib.suppress(ValueError):
                    result.add(int(line))
        return result

    def cpu_s(self) -> float | None:
        if self.version == "v1":
            acct = self.dirs.get("cpuacct")
            usage = _read_int(acct / "cpuacct.usage") if acct is not None else None
            return usage / 1e9 if usage is not None else None
        cpu = self.dirs.get("cpu") or self.dirs.get("memory")
        if cpu is None:
            return None
        usec = _keyed(cpu / "cpu.stat").get("usage_usec")
        return usec / 1e6 if usec is not None else None

    def stats(self) -> tuple[float | None, int | None, int | None, list[str]]:
        """CPU seconds, peak memory, peak pids and the limits that were hit."""
        mem, pids = self.dirs.get("memory"), self.dirs.get("pids")
        hit: list[str] = []
        peak_mem = peak_pids = None
        if mem is not None:
            if self.version == "v1":
                peak_mem = _read_int(mem / "memory.max_usage_in_bytes")
                oom = _keyed(mem / "memory.oom_control").get("oom_kill", 0)
            else:
                peak_mem = _read_int(mem / "memory.peak")
                oom = _keyed(mem / "memory.events").get("oom_kill", 0)
            if oom:
                hit.append("memory")
        if pids is not None:
            peak_pids = _read_int(pids / "pids.peak")
            if _keyed(pids / "pids.events").get("max", 0):
                hit.append("pids")
        return self.cpu_s(), peak_mem, peak_pids, hit

    def kill(self) -> None:
        """SIGKILL everything in the cgroup (cgroup.kill, or freeze, kill, thaw)."""
        for _ in range(50):
            procs = self.procs()
            if not procs:
                return
            freezer = self.dirs.get("freezer")
            if self.version == "v2" and freezer is not None:
                kill_file = freezer / "cgroup.kill"
                if kill_file.exists():
                    with contextlib.suppress(OSError):
                        _write(kill_file, "1")
                        time.sleep(_KILL_POLL_S)
                        continue
            frozen = self._freeze(True) if freezer is not None else False
            for pid in self.procs() if frozen else procs:
                self._kill_member(pid)
            if frozen:
                self._freeze(False)
            time.sleep(_KILL_POLL_S)

    def _kill_member(self, pid: int) -> None:
        """SIGKILL ``pid`` if it is (still) in this cgroup: by pidfd, never a reused pid."""
        fd = _pidfd_open(pid)
        if fd is None:
            return
        try:
            if f"/{self.name}" in (_read(Path(f"/proc/{pid}/cgroup")) or ""):
                _pidfd_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)

    def _freeze(self, frozen: bool) -> bool:
        freezer = self.dirs["freezer"]
        try:
            if self.version == "v1":
                _write(freezer / "freezer.state", "FROZEN" if frozen else "THAWED")
            else:
                _write(freezer / "cgroup.freeze", "1" if frozen else "0")
        except OSError:
            return False
        if not frozen:
            return True
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if self.version == "v1":
                if (_read(freezer / "freezer.state") or "").strip() == "FROZEN":
                    return True
            elif _keyed(freezer / "cgroup.events").get("frozen") == 1:
                return True
            time.sleep(_KILL_POLL_S)
        return True  # partly frozen: killing still helps

    def remove(self, within: float = 3.0) -> bool:
        """Remove the cgroup once it is empty (killing what is left); False if it stayed."""
        deadline = time.monotonic() + within
        while True:
            if self.procs():
                self.kill()
            left = []
            for path in self._unique:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(path)
            self._unique = left
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(_KILL_POLL_S)


def _sweep_stale(parent: Path) -> None:
    """rmdir forgeline cgroups left behind by a crashed forgeline (rmdir fails when in use)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith(_CGROUP_PREFIX) or not entry.is_dir():
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_CGROUP_S:
                    os.rmdir(entry.path)


# --------------------------------------------------------------------------- processes


def _pid_ns(pid: int) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    try:
        return int(link.partition("[")[2].rstrip("]"))
    except ValueError:
        return None


def _ns_members(ns: int) -> list[int]:
    """Host pids of the live (non-zombie) processes in the pid namespace ``ns``."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if _pid_ns(pid) != ns:
                continue
            stat = _read(Path(f"/proc/{pid}/stat")) or ""
            fields = stat.rpartition(")")[2].split()
            if fields and fields[0] not in ("Z", "X"):
                members.append(pid)
    return members


def _pidfd_open(pid: int, ns: int | None = None) -> int | None:
    """A pidfd for ``pid`` (if ``ns`` is given: only if it is in that pid namespace)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if ns is not None and _pid_ns(pid) != ns:
        os.close(fd)
        return None
    return fd


def _pidfd_signal(fd: int | None, sig: signal.Signals) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(fd, sig)


class _Sandboxed:
    """One started sandbox: the wrapper (then bwrap) process, its pid namespace, cgroup."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        cgroup: _RunCgroup | None,
        mechanism: Mechanism,
        info_fd: int,
        started: float,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.cgroup = cgroup
        self.mechanism: Mechanism = mechanism
        self.started = started
        self._info_fd: int | None = info_fd
        self._pidfd = _pidfd_open(popen.pid)
        self._init_pidfd: int | None = None
        # Held open so that the pid namespace (and so its inode number, by which its members
        # are found in /proc) cannot be freed and reused while we may still look for them.
        self._ns_fd: int | None = None
        self.init_pid: int | None = None
        self.pid_ns: int | None = None
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self.ended: float | None = None
        self.final_stats: tuple[float | None, int | None, int | None, list[str]] | None = None
        self.killed = False
        self.limits_hit: list[str] = []
        self.sampled_cpu_s = 0.0
        self.sampled_rss = 0
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
        usage: resource.struct_rusage | None = None
        with contextlib.suppress(ChildProcessError):
            _, status, usage = os.wait4(self.pid, 0)
        self.ended = time.monotonic()
        self.status, self.rusage = status, usage
        if status is not None:
            self.popen.returncode = os.waitstatus_to_exitcode(status)
        # bwrap exits after its init, and the kernel empties a pid namespace before its init
        # is gone; what the cgroup still holds is on its way out. Read it, then remove it.
        if self.cgroup is not None:
            self.final_stats = self.cgroup.stats()
            self.cgroup.remove()
        self._close_fds()

        def deliver() -> None:
            for callback in self.on_exit:
                callback()
            if not self.exited.done():
                self.exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(deliver)

    def _close_fds(self) -> None:
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
                _pidfd_signal(self._init_pidfd, sig)
            _pidfd_signal(self._pidfd, sig)

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
            return False
        child, ns = info.get("child-pid"), info.get("pid-namespace")
        if isinstance(child, int) and isinstance(ns, int):
            self.init_pid = child
            fd_init = _pidfd_open(child, ns)
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
        return True

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
        return _ns_members(ns)

    def _signal_members(self, sig: signal.Signals, *, skip_init: bool) -> None:
        for pid in self.members():
            if skip_init and pid == self.init_pid:
                continue
            fd = _pidfd_open(pid, self.pid_ns)
            if fd is not None:
                _pidfd_signal(fd, sig)
                os.close(fd)

    def kill_now(self) -> None:
        """SIGKILL the sandbox's init (the kernel then kills its whole pid namespace), bwrap
        and anything in the cgroup. Synchronous: safe in cancellation paths."""
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
            await asyncio.wait_for(asyncio.shield(self.exited), _DRAIN_S)
        deadline = time.monotonic() + _DRAIN_S
        while self.members() and time.monotonic() < deadline:
            self.sweep()
            await asyncio.sleep(_KILL_POLL_S)

    def sample(self) -> None:
        """Sample CPU time and resident memory of the sandbox's processes (no cgroup)."""
        if self.pid_ns is None:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        cpu = 0.0
        rss = 0
        for pid in self.members():
            fields = (_read(Path(f"/proc/{pid}/stat")) or "").rpartition(")")[2].split()
            if len(fields) < 22:
                continue
            try:
                cpu += (int(fields[11]) + int(fields[12])) / ticks
                if pid == self.init_pid:  # it reaps the command and every orphan
                    cpu += (int(fields[13]) + int(fields[14])) / ticks
                rss += int(fields[21]) * page
            except ValueError:
                continue
        self.sampled_cpu_s = max(self.sampled_cpu_s, cpu)
        self.sampled_rss = max(self.sampled_rss, rss)

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
            # No cgroup: what sampling saw, or bwrap's own rusage (bwrap does not reap its
            # init, so that holds little of the sandbox's), whichever is larger.
            cpu, peak_mem = self.sampled_cpu_s, self.sampled_rss
            if self.rusage is not None:
                cpu = max(cpu, self.rusage.ru_utime + self.rusage.ru_stime)
                peak_mem = max(peak_mem, self.rusage.ru_maxrss * 1024)
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


# --------------------------------------------------------------------------- sandbox


def _bwrap_features(bwrap: str) -> frozenset[str]:
    try:
        done = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    text = done.stdout + done.stderr
    return frozenset(
        option for option in ("--disable-userns", "--size", "--perms") if option in text
    )


def _root_only_files(top: Path, *, skip: Iterable[str] = ()) -> list[Path]:
    """Regular files under ``top`` that others may not read (only root may)."""
    found: list[Path] = []
    skipped = set(skip)
    for root, dirs, files in os.walk(top):
        if Path(root) == top:
            dirs[:] = [d for d in dirs if d not in skipped]
        for name in files:
            path = Path(root) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                    found.append(path)
    return found


@functools.cache
def _proc_masks() -> tuple[tuple[Path, tuple[str, ...]], ...]:
    """bwrap options that cover the sensitive parts of the sandbox's /proc (see above)."""
    ops: list[tuple[Path, tuple[str, ...]]] = []
    for name in _PROC_READ_ONLY:
        path = Path("/proc") / name
        if path.exists():
            ops.append((path, ("--ro-bind", str(path), str(path))))
    masked = [Path("/proc") / name for name in _PROC_MASKED]
    # Root-only sysctls (cad_pid, usermodehelper, mmap_rnd_bits, ...) and top-level files;
    # /proc/sys/net differs per network namespace, so only its one known such file.
    masked += _root_only_files(Path("/proc/sys"), skip=["net"])
    masked.append(Path("/proc/sys/net/ipv4/tcp_fastopen_key"))
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() or entry.name in ("self", "thread-self"):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                    masked.append(Path(entry.path))
    seen: set[Path] = set()
    for path in masked:
        if path in seen:
            continue
        seen.add(path)
        if path.is_dir():
            ops.append((path, ("--tmpfs", str(path))))
        elif path.exists():
            ops.append((path, ("--ro-bind", "/dev/null", str(path))))
    return tuple(ops)


def _python_prefixes() -> list[Path]:
    seen: list[Path] = []
    for raw in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for path in (Path(raw).absolute(), Path(raw).resolve()):
            if path == Path("/") or path.is_relative_to("/usr") or path in seen:
                continue
            if path.is_dir():
                seen.append(path)
    return seen


def _protocol_factory(reader: asyncio.StreamReader) -> Callable[[], asyncio.Protocol]:
    return lambda: asyncio.StreamReaderProtocol(reader)


def _user_processes(uid: int) -> int:
    """How many processes (threads count for RLIMIT_NPROC too) ``uid`` runs now."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _within_hard_limit(which: int, values: tuple[int, int]) -> tuple[int, int]:
    """``values`` lowered to our own hard limit (a child may not raise it)."""
    _, hard = resource.getrlimit(which)
    if hard == resource.RLIM_INFINITY:
        return values
    return min(values[0], hard), min(values[1], hard)


def _pipe_with(data: bytes) -> int:
    """The read end of a pipe that holds ``data`` (small: it must fit the pipe buffer)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


class BwrapSandbox:
    """``ProcessSpawner`` that runs every child in a bubblewrap sandbox (see the module doc).

    ``extra_ro``/``extra_rw`` are host paths bound (at the same path) into every run,
    ``binds`` on ``run``/``start`` adds more for one call. ``limits`` are per run;
    ``use_cgroups=False`` forces the rlimit fallback. ``temp_arg_prefix``: argv items that are
    paths inside the system temp dir, under a directory whose name starts with it, get that
    directory bound read-write (forgeline's pytest runner puts its JUnit report there);
    None turns that off. ``forward_port_env``: when ``start`` is given that variable (the
    preview's ``PORT``), host 127.0.0.1:PORT is forwarded to the sandbox's own 127.0.0.1:PORT
    (the sandbox has no network of its own to listen on); None turns that off.
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
            self._features = _bwrap_features(self.bwrap)
        return self._features

    def cgroups(self) -> CgroupSupport:
        if not self.use_cgroups:
            return CgroupSupport(None, {}, "cgroups turned off (use_cgroups=False)")
        return detect_cgroups()

    @property
    def limits_mechanism(self) -> Mechanism:
        """How limits are enforced for runs started now: a cgroup version or ``rlimit``."""
        return self.cgroups().mechanism

    def _temp_dirs(self, args: Sequence[str]) -> list[Path]:
        if not self.temp_arg_prefix:
            return []
        tmp = Path(tempfile.gettempdir()).resolve()
        found: list[Path] = []
        for arg in args:
            value = arg.partition("=")[2] if arg.startswith("-") else arg
            if not value.startswith("/"):
                continue
            path = Path(os.path.normpath(value))
            if not path.is_relative_to(tmp) or path == tmp:
                continue
            top = tmp / path.relative_to(tmp).parts[0]
            if not top.name.startswith(self.temp_arg_prefix) or top in found:
                continue
            with contextlib.suppress(OSError):
                info = top.lstat()
                if top.is_dir() and not top.is_symlink() and info.st_uid == os.getuid():
                    found.append(top)
        return found

    def command(
        self,
        args: Sequence[str],
        cwd: Path,
        binds: Sequence[Bind] = (),
        *,
        info_fd: int | None = None,
    ) -> tuple[list[str], list[int]]:
        """bwrap's argv for running ``args`` in ``cwd``, and the fds it must inherit (the
        caller closes them once bwrap has started)."""
        workspace = cwd.resolve()
        for forbidden in ("/", *_FORBIDDEN_WORKSPACES):
            if workspace == Path(forbidden) or (
                forbidden != "/" and workspace.is_relative_to(forbidden)
            ):
                raise SandboxError(f"refusing to use {workspace} as a sandbox workspace")
        # (destination, options): mounted parents first, so a deeper bind is never hidden.
        ops: list[tuple[Path, list[str]]] = [(Path("/usr"), ["--ro-bind", "/usr", "/usr"])]
        for name in _TOP_LEVEL:
            path = Path("/") / name
            if path.is_symlink():
                ops.append((path, ["--symlink", os.readlink(path), str(path)]))
            elif path.is_dir():
                ops.append((path, ["--ro-bind", str(path), str(path)]))
        ops += [
            (Path("/proc"), ["--proc", "/proc"]),
            (Path("/dev"), ["--dev", "/dev"]),
        ]
        ops += [(path, list(options)) for path, options in _proc_masks()]
        tmpfs = ["--tmpfs", "/tmp"]
        if self.limits.tmp_bytes is not None and "--size" in self.features:
            tmpfs = ["--size", str(self.limits.tmp_bytes), *tmpfs]
        if "--perms" in self.features:
            tmpfs = ["--perms", "1777", *tmpfs]
        ops.append((Path("/tmp"), tmpfs))
        for name in _ETC_FILES:
            path = Path("/etc") / name
            ops.append((path, ["--ro-bind-try", str(path), str(path)]))
        for path in sorted(Path("/etc").glob("python3*")):
            ops.append((path, ["--ro-bind-try", str(path), str(path)]))
        fds: list[int] = []
        try:
            for name, text in self._etc_data().items():
                fd = _pipe_with(text.encode())
                fds.append(fd)
                ops.append((Path("/etc") / name, ["--ro-bind-data", str(fd), f"/etc/{name}"]))

            def bind(source: Path, dest: Path, writable: bool) -> None:
                if not source.exists():
                    raise SandboxError(f"cannot bind {source} into the sandbox: it does not exist")
                option = "--bind" if writable else "--ro-bind"
                ops.append((dest, [option, str(source), str(dest)]))

            for prefix in _python_prefixes():
                bind(prefix, prefix, False)
            bind(workspace, workspace, True)
            if cwd.absolute() != workspace:
                bind(workspace, cwd.absolute(), True)
            if self.protect_git:
                # forgeline runs git on the host in this workspace afterwards: hooks or a
                # config planted in .git would run there, outside the sandbox. (A symlink
                # is not followed: it is the sandbox's own doing and stays as it is.)
                for dest in {workspace, cwd.absolute()}:
                    git = dest / ".git"
                    with contextlib.suppress(OSError):
                        info = (workspace / ".git").lstat()
                        if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                            ops.append((git, ["--ro-bind", str(workspace / ".git"), str(git)]))
            for path in self._temp_dirs(args):
                bind(path, path, True)
            for path in self.extra_rw:
                bind(path.resolve(), path.absolute(), True)
            for path in self.extra_ro:
                bind(path.resolve(), path.absolute(), False)
            for extra in binds:
                dest = (extra.dest or extra.source).absolute()
                bind(extra.source.resolve(), dest, extra.writable)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        ops.sort(key=lambda op: len(op[0].parts))  # stable: same depth keeps its order

        argv = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_GID),
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        if "--disable-userns" in self.features:
            argv.append("--disable-userns")
        for _, options in ops:
            argv += options
        argv += ["--remount-ro", "/", "--chdir", str(cwd.absolute())]
        if info_fd is not None:
            argv += ["--info-fd", str(info_fd)]
        argv += ["--", *args]
        return argv, fds

    @staticmethod
    def _etc_data() -> dict[str, str]:
        uid, gid = SANDBOX_UID, SANDBOX_GID
        return {
            "passwd": (
                f"sandbox:x:{uid}:{gid}:forgeline sandbox:/tmp:/usr/sbin/nologin\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
            "group": f"sandbox:x:{gid}:\nnogroup:x:65534:\n",
            "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            "hostname": "sandbox\n",
        }

    @staticmethod
    def _env(env: Mapping[str, str] | None) -> dict[str, str]:
        result = child_env(None)
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

    def _rlimits(self, cgroup: bool) -> list[tuple[int, tuple[int, int]]]:
        """(resource, (soft, hard)) for the sandbox's first process; its tree inherits them."""
        limits = self.limits
        result = [(resource.RLIMIT_CORE, (0, 0))]
        if limits.cpu_seconds is not None:
            # SIGXCPU at the soft limit, SIGKILL a second later. With a cgroup the tree-wide
            # total is watched; this per-process one backs it up.
            seconds = math.ceil(limits.cpu_seconds) + (1 if cgroup else 0)
            result.append((resource.RLIMIT_CPU, (seconds, seconds + 1)))
        if limits.file_bytes is not None:
            result.append((resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes)))
        if not cgroup:
            if limits.memory_bytes is not None:
                result.append((resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)))
            if limits.pids is not None and os.getuid() != 0:
                # Per uid: what this user already runs counts too. (uid 0 is exempt.)
                nproc = _user_processes(os.getuid()) + limits.pids
                result.append((resource.RLIMIT_NPROC, (nproc, nproc)))
        return [(which, _within_hard_limit(which, values)) for which, values in result]

    # ------------------------------------------------------------------ launching

    def _spawn(
        self,
        args: tuple[str, ...],
        cwd: Path,
        env: Mapping[str, str] | None,
        binds: Sequence[Bind],
        *,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        program: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> _Sandboxed:
        full_env = self._env(env)
        self._check_program(program or args[0], cwd.resolve(), full_env)
        started = time.monotonic()
        support = self.cgroups()
        cgroup: _RunCgroup | None = None
        mechanism: Mechanism = "rlimit"
        if support.version is not None:
            try:
                cgroup = _RunCgroup(support, self.limits)
                mechanism = support.mechanism
            except OSError:
                cgroup = None  # this run falls back to rlimits; `usage.mechanism` says so
        info_r, info_w = os.pipe()
        go_r, go_w = os.pipe()
        fds: list[int] = []
        popen: subprocess.Popen[bytes] | None = None
        try:
            argv, fds = self.command(args, cwd, binds, info_fd=info_w)
            try:
                popen = subprocess.Popen(
                    [_SH, "-c", _WRAPPER, "forgeline-sandbox", *argv],
                    cwd=cwd.resolve(),
                    env=full_env,
                    stdin=go_r,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(info_w, *fds, *pass_fds),
                    start_new_session=True,
                )
            except OSError as exc:
                raise SpawnError(f"could not start bubblewrap for {args[0]!r}: {exc}") from exc
            try:
                for which, values in self._rlimits(cgroup is not None):
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
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for fd in (info_w, go_r, go_w, *fds):
                with contextlib.suppress(OSError):
                    os.close(fd)
        return _Sandboxed(popen, cgroup, mechanism, info_r, started)

    async def _watch(self, sandboxed: _Sandboxed) -> None:
        """Return once the run's total CPU time (from its cgroup) exceeds the limit. Without
        a cgroup, sample the sandbox's processes for the usage numbers instead."""
        limit, cgroup = self.limits.cpu_seconds, sandboxed.cgroup
        while True:
            await asyncio.sleep(_CPU_POLL_S)
            if cgroup is None:
                sandboxed.sample()
                continue
            used = cgroup.cpu_s()
            if limit is not None and used is not None and used > limit:
                return

    def _forward_port(self, env: Mapping[str, str] | None) -> int | None:
        if not self.forward_port_env or not env:
            return None
        value = env.get(self.forward_port_env, "")
        if not value.isdigit() or not 0 < int(value) < 65536:
            return None
        return int(value)

    # ------------------------------------------------------------------ protocol

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
        max_output: int = 200_000,
        binds: Sequence[Bind] = (),
    ) -> SandboxResult:
        """Run in the sandbox to completion, ``timeout`` or a limit; nothing outlives it."""
        args = _check_argv(argv)
        _check_cwd(cwd)
        if max_output < 0:
            raise ValueError("max_output must be >= 0")
        sandboxed = self._spawn(
            args, cwd, env, binds, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        loop = asyncio.get_running_loop()
        out, err = _TailBuffer(max_output), _TailBuffer(max_output)
        transports: list[asyncio.BaseTransport] = []
        readers: list[asyncio.Task[None]] = []
        watcher: asyncio.Task[None] | None = None
        timed_out = False
        try:
            for pipe, sink in ((sandboxed.popen.stdout, out), (sandboxed.popen.stderr, err)):
                reader = asyncio.StreamReader(loop=loop)
                transport, _ = await loop.connect_read_pipe(_protocol_factory(reader), pipe)
                transports.append(transport)
                readers.append(asyncio.create_task(_pump(reader, sink)))
            deadline = sandboxed.started + timeout
            if not await sandboxed.ready():
                await sandboxed.terminate(0)
                await asyncio.wait(readers, timeout=_DRAIN_S)
                text, _ = err.text()
                raise SandboxError(
                    f"could not start the sandbox for {args[0]!r}: "
                    f"{text.strip() or 'bubblewrap gave no reason'}"
                )
            watcher = asyncio.create_task(self._watch(sandboxed))
            done, _ = await asyncio.wait(
                {sandboxed.exited, watcher},
                timeout=max(deadline - time.monotonic(), 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if sandboxed.exited.done():
                await sandboxed.terminate(0)  # sweeps leftovers (normally none)
            elif watcher in done:
                sandboxed.limits_hit.append("cpu")
                await sandboxed.terminate(0)
            else:
                timed_out = True
                await sandboxed.terminate(self.kill_grace)
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except BaseException:
            sandboxed.kill_now()
            for task in readers:
                task.cancel()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            for each in transports:
                each.close()
            for stream in (sandboxed.popen.stdout, sandboxed.popen.stderr):
                if stream is not None and not stream.closed:
                    stream.close()

        stdout, stdout_cut = out.text()
        stderr, stderr_cut = err.text()
        usage = sandboxed.usage()
        return SandboxResult(
            argv=args,
            exit_code=sandboxed.exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            duration_s=usage.wall_s,
            stdout_truncated=stdout_cut,
            stderr_truncated=stderr_cut,
            usage=usage,
        )

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        binds: Sequence[Bind] = (),
    ) -> BwrapProcess:
        """Start in the sandbox, detached, output to ``log_path``; the caller stops it.

        Memory and pids limits apply as in ``run``; CPU time only per process (rlimit).
        """
        args = _check_argv(argv)
        _check_cwd(cwd)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("wb")
        except OSError as exc:
            raise SpawnError(f"could not open the log {log_path}: {exc}") from exc
        port = self._forward_port(env)
        forward: _PortForward | None = None
        with log:
            if port is None:
                sandboxed = self._spawn(args, cwd, env, binds, stdout=log, stderr=subprocess.STDOUT)
            else:
                host_end, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                forward = _PortForward(port, host_end)
                try:
                    await forward.listen()
                    relay = (sys.executable, "-I", "-S", "-c", _RELAY)
                    sandboxed = self._spawn(
                        (*relay, str(sandbox_end.fileno()), str(port), *args),
                        cwd,
                        env,
                        binds,
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
            text = _read(log_path) or ""
            raise SandboxError(
                f"could not start the sandbox for {args[0]!r}: "
                f"{text.strip()[-2000:] or 'bubblewrap gave no reason'}"
            )
        return BwrapProcess(sandboxed, args, log_path)


# The relay a forwarded ``start`` runs in the sandbox in front of the program: it runs the
# program as its child (passing on SIGTERM/SIGINT/SIGHUP, exiting with its status) and, for
# each request on the control socket from forgeline, connects to the program's port on the
# sandbox's loopback and sends the connected socket back (SCM_RIGHTS). forgeline then talks
# to the program through that socket; nothing in the sandbox gets a way out.
_RELAY = r"""
import signal, socket, subprocess, sys, threading
ctrl = socket.socket(fileno=int(sys.argv[1]))
ctrl.set_inheritable(False)
port = int(sys.argv[2])
child = subprocess.Popen(sys.argv[3:])
def forward(signum, frame):
    child.send_signal(signum)
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, forward)
def serve():
    while True:
        try:
            if not ctrl.recv(16):
                return
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                ctrl.send(b"e")
                continue
            try:
                socket.send_fds(ctrl, [b"k"], [conn.fileno()])
            finally:
                conn.close()
        except OSError:
            return
threading.Thread(target=serve, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""
_FORWARD_TIMEOUT_S = 10.0


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


class _PortForward:
    """Host 127.0.0.1:``port`` -> the sandbox's 127.0.0.1:``port``, through the relay."""

    def __init__(self, port: int, control: socket.socket) -> None:
        self.port = port
        self._control = control
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def listen(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        except OSError as exc:
            raise SandboxError(
                f"cannot forward 127.0.0.1:{self.port} into the sandbox: {exc}"
            ) from exc

    def _connect(self) -> socket.socket | None:
        """Ask the relay for a connection to the program's port (blocking; in a thread)."""
        with self._lock:
            if self._closed:
                return None
            try:
                self._control.settimeout(_FORWARD_TIMEOUT_S)
                self._control.send(b"c")
                _, fds, _, _ = socket.recv_fds(self._control, 16, 4)
            except OSError:
                return None
        conn: socket.socket | None = None
        for fd in fds:
            if conn is None and stat.S_ISSOCK(os.fstat(fd).st_mode):
                conn = socket.socket(fileno=fd)
            else:
                os.close(fd)
        return conn

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            conn = await asyncio.to_thread(self._connect)
            if conn is None:
                return
            conn.setblocking(False)
            inner_reader, inner_writer = await asyncio.open_connection(sock=conn)
            try:
                await asyncio.gather(_copy(reader, inner_writer), _copy(inner_reader, writer))
            finally:
                inner_writer.close()
        except OSError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        with self._lock:
            self._control.close()


class BwrapProcess:
    """A detached sandboxed process from ``BwrapSandbox.start``.

    ``pid`` is bwrap's (it leads its own process group, so ``stop_process_group(pid)`` from
    another process works too: bwrap dies and ``--die-with-parent`` takes the sandbox down).
    """

    def __init__(self, sandboxed: _Sandboxed, argv: tuple[str, ...], log_path: Path) -> None:
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


# --------------------------------------------------------------------------- availability

_available_cache: tuple[str | None] | None = None
_available_lock = threading.Lock()


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"bubblewrap sandboxing needs Linux (this is {sys.platform})"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    max_ns = _read_int(Path("/proc/sys/user/max_user_namespaces"))
    if max_ns == 0:
        return "user namespaces are disabled (sysctl user.max_user_namespaces = 0)"
    if os.getuid() != 0 and _read_int(Path("/proc/sys/kernel/unprivileged_userns_clone")) == 0:
        return (
            "unprivileged user namespaces are disabled "
            "(sysctl kernel.unprivileged_userns_clone = 0)"
        )
    sandbox = BwrapSandbox(use_cgroups=False, bwrap=bwrap)
    check = f'test "$(id -u)" = {SANDBOX_UID} && test ! -w /usr && echo forgeline-sandbox-ok'
    with tempfile.TemporaryDirectory(prefix="forgeline-probe-") as tmp:
        try:
            argv, fds = sandbox.command([_SH, "-c", check], Path(tmp))
        except SpawnError as exc:
            return str(exc)
        try:
            done = subprocess.run(
                argv,
                cwd=tmp,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT_S,
                pass_fds=fds,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap could not be run: {exc}"
        finally:
            for fd in fds:
                os.close(fd)
    if "forgeline-sandbox-ok" not in done.stdout:
        detail = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
        if "sandbox-ok" not in detail and done.returncode == 0:
            detail = "the sandboxed process was root or could write /usr"
        return f"bubblewrap cannot create the sandbox here: {detail[-500:]}"
    return None


def sandbox_available(*, refresh: bool = False) -> str | None:
    """None if ``BwrapSandbox`` works on this machine, else the reason it does not.

    Checks for Linux, the ``bwrap`` program and user namespaces, then starts one real
    sandbox. The answer is cached; ``refresh`` checks again.
    """
    global _available_cache
    with _available_lock:
        if _available_cache is None or refresh:
            _available_cache = (_probe(),)
        return _available_cache[0]
