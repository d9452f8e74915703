"""Cgroups for sandboxed runs: whether they can be made here, and one per run.

A per-run cgroup limits memory, pids and CPU rate for the whole process tree, counts what
it used and can kill everything in it. ``detect_cgroups`` finds where such cgroups can be
made (v1 controllers, or a delegated v2 subtree); without that, runs fall back to rlimits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forgeline.sandbox.bwrap.kernfs import read_int, read_keyed, read_text, write_value
from forgeline.sandbox.bwrap.limits import Mechanism, ResourceLimits
from forgeline.sandbox.bwrap.pidns import KILL_POLL_S, pidfd_open, pidfd_signal

__all__ = ["CgroupSupport", "RunCgroup", "detect_cgroups"]

_CGROUP_PREFIX = "forgeline-"
# Cgroups named forgeline-* older than this with nothing in them are left-overs; removed.
_STALE_CGROUP_S = 300.0


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


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    result: dict[str, str] = {}
    for line in (read_text(Path("/proc/self/cgroup")) or "").splitlines():
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
    available = set((read_text(base / "cgroup.controllers") or "").split())
    missing = [name for name in ("memory", "pids") if name not in available]
    if missing:
        return CgroupSupport(
            None, {}, f"cgroup v2 controllers {missing} are not delegated to {base}"
        )
    enabled = set((read_text(base / "cgroup.subtree_control") or "").split())
    for name in ("memory", "pids", "cpu"):
        if name in enabled or name not in available:
            continue
        try:
            write_value(base / "cgroup.subtree_control", f"+{name}")
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
    enabled = set((read_text(base / "cgroup.subtree_control") or "").split())
    controllers: dict[str, Path] = {
        name: base for name in ("memory", "pids", "cpu") if name in enabled
    }
    controllers["freezer"] = base  # cgroup.freeze is core in v2
    return CgroupSupport("v2", controllers)


def _detect_v1(own: dict[str, str]) -> CgroupSupport:
    dirs: dict[str, Path] = {}
    for line in (read_text(Path("/proc/self/mountinfo")) or "").splitlines():
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


class RunCgroup:
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
                write_value(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    with contextlib.suppress(OSError):
                        write_value(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if pids is not None and limits.pids is not None:
                # + the wrapper that becomes bwrap, and bwrap's init.
                write_value(pids / "pids.max", str(limits.pids + 2))
            if cpu is not None and limits.cpu_cores is not None:
                write_value(cpu / "cpu.cfs_period_us", "100000")
                write_value(
                    cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu_cores * 100000)))
                )
        else:
            if mem is not None and limits.memory_bytes is not None:
                write_value(mem / "memory.max", str(limits.memory_bytes))
                if (mem / "memory.swap.max").exists():
                    with contextlib.suppress(OSError):
                        write_value(mem / "memory.swap.max", "0")
            if pids is not None and limits.pids is not None:
                write_value(pids / "pids.max", str(limits.pids + 2))
            if cpu is not None and limits.cpu_cores is not None:
                write_value(cpu / "cpu.max", f"{max(1000, int(limits.cpu_cores * 100000))} 100000")

    def add(self, pid: int) -> None:
        for path in self._unique:
            write_value(path / "cgroup.procs", str(pid))

    def procs(self) -> set[int]:
        result: set[int] = set()
        for path in self._unique:
            for line in (read_text(path / "cgroup.procs") or "").split():
                with contextlib.suppress(ValueError):
                    result.add(int(line))
        return result

    def cpu_s(self) -> float | None:
        if self.version == "v1":
            acct = self.dirs.get("cpuacct")
            usage = read_int(acct / "cpuacct.usage") if acct is not None else None
            return usage / 1e9 if usage is not None else None
        cpu = self.dirs.get("cpu") or self.dirs.get("memory")
        if cpu is None:
            return None
        usec = read_keyed(cpu / "cpu.stat").get("usage_usec")
        return usec / 1e6 if usec is not None else None

    def stats(self) -> tuple[float | None, int | None, int | None, list[str]]:
        """CPU seconds, peak memory, peak pids and the limits that were hit."""
        mem, pids = self.dirs.get("memory"), self.dirs.get("pids")
        hit: list[str] = []
        peak_mem = peak_pids = None
        if mem is not None:
            if self.version == "v1":
                peak_mem = read_int(mem / "memory.max_usage_in_bytes")
                oom = read_keyed(mem / "memory.oom_control").get("oom_kill", 0)
            else:
                peak_mem = read_int(mem / "memory.peak")
                oom = read_keyed(mem / "memory.events").get("oom_kill", 0)
            if oom:
                hit.append("memory")
        if pids is not None:
            peak_pids = read_int(pids / "pids.peak")
            if read_keyed(pids / "pids.events").get("max", 0):
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
                        write_value(kill_file, "1")
                        time.sleep(KILL_POLL_S)
                        continue
            frozen = self._freeze(True) if freezer is not None else False
            for pid in self.procs() if frozen else procs:
                self._kill_member(pid)
            if frozen:
                self._freeze(False)
            time.sleep(KILL_POLL_S)

    def _kill_member(self, pid: int) -> None:
        """SIGKILL ``pid`` if it is (still) in this cgroup: by pidfd, never a reused pid."""
        fd = pidfd_open(pid)
        if fd is None:
            return
        try:
            if f"/{self.name}" in (read_text(Path(f"/proc/{pid}/cgroup")) or ""):
                pidfd_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)

    def _freeze(self, frozen: bool) -> bool:
        freezer = self.dirs["freezer"]
        try:
            if self.version == "v1":
                write_value(freezer / "freezer.state", "FROZEN" if frozen else "THAWED")
            else:
                write_value(freezer / "cgroup.freeze", "1" if frozen else "0")
        except OSError:
            return False
        if not frozen:
            return True
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if self.version == "v1":
                if (read_text(freezer / "freezer.state") or "").strip() == "FROZEN":
                    return True
            elif read_keyed(freezer / "cgroup.events").get("frozen") == 1:
                return True
            time.sleep(KILL_POLL_S)
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
            time.sleep(KILL_POLL_S)


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
