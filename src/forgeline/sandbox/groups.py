"""Signalling a child's whole process group, and knowing a process again later.

Every child a spawner starts leads its own process group, so stopping it means signalling
the group: SIGTERM, a grace period, then SIGKILL. forgeline never signals group 1 or its
own group.

A pid alone does not name a process for long: once it exits and is reaped, the kernel
hands its number to the next process. ``ProcessIdentity`` adds what does not repeat, the
start time (clock ticks after boot, from ``/proc/<pid>/stat``) and the boot id, so a
process started by another forgeline process (a preview) can be stopped later only while
it is still that very process (``stop_identified_group``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from forgeline.sandbox.spawner import SpawnError

__all__ = [
    "ProcessIdentity",
    "check_pgid",
    "identify",
    "stop_identified_group",
    "stop_process_group",
    "terminate_group",
]

_POLL_S = 0.05
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    # "pid (comm) S ppid pgrp ...": comm may contain spaces and parentheses.
    fields = stat.rpartition(")")[2].split()
    return fields if len(fields) >= 20 else None


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
        fields = _stat_fields(int(name))
        if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def check_pgid(pgid: int) -> None:
    """Refuse (``SpawnError``) a group forgeline must never signal: init's, its own."""
    if pgid <= 1:
        raise SpawnError(f"refusing to signal process group {pgid}")
    if pgid == os.getpgrp():
        raise SpawnError(f"refusing to signal forgeline's own process group {pgid}")


async def terminate_group(pgid: int, grace: float) -> bool:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL. False if it was gone."""
    check_pgid(pgid)
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
    """Stop a detached process group by its leader's pid, from any process.

    SIGTERM to the group, up to ``grace`` seconds for it to go, then SIGKILL. Returns False
    if the group was already gone. The pid is trusted: to stop a process recorded earlier,
    whose pid may have been reused since, use ``stop_identified_group``.
    """
    check_pgid(pid)
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


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it can be recognised later: pid, process group, start time (clock
    ticks after boot) and the boot it started in."""

    pid: int
    pgid: int
    start_time: int
    boot_id: str


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the running process ``pid``, or None if there is none (or only a
    zombie)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    try:
        return ProcessIdentity(pid, int(fields[2]), int(fields[19]), _boot_id())
    except ValueError:
        return None


def stop_identified_group(identity: ProcessIdentity, grace: float = 3.0) -> bool:
    """Stop the group ``identity`` leads, but only while its leader is still that process.

    The leader is pinned with a pidfd first, and only then compared with ``identity``
    (start time, boot id): a pid that was reused for another process, or a process that
    is gone, is never signalled (False). True once the group was stopped.
    """
    check_pgid(identity.pgid)
    try:
        pidfd = os.pidfd_open(identity.pid)
    except (ProcessLookupError, AttributeError):
        return False
    except OSError as exc:
        raise SpawnError(f"cannot look at process {identity.pid}: {exc}") from exc
    try:
        now = identify(identity.pid)
        if now is None or (now.start_time, now.boot_id) != (identity.start_time, identity.boot_id):
            return False
        stop_process_group(identity.pgid, grace)
        # A leader that left its group (setpgid) is still ours: the pidfd reaches it.
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    finally:
        os.close(pidfd)
