"""Resource limits for a sandboxed run, what it used, and the rlimits that back them.

With a per-run cgroup (see ``cgroups``) memory, pids and CPU rate are limited for the
whole process tree; the rlimits here apply in any case (CPU time, file size, no core
dumps) and stand in for memory and pids where there is no cgroup.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from dataclasses import dataclass

# What a run used lives with the spawner protocol (every spawner reports it).
from forgeline.sandbox.spawner import Mechanism, ResourceUsage

__all__ = ["Mechanism", "ResourceLimits", "ResourceUsage", "rlimits"]


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


def rlimits(limits: ResourceLimits, *, cgroup: bool) -> list[tuple[int, tuple[int, int]]]:
    """(resource, (soft, hard)) for the sandbox's first process; its tree inherits them."""
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
