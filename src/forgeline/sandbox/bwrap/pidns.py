"""Processes by pid namespace and pidfd: finding a sandbox's members, signalling them.

A pid is only ever signalled through a pidfd opened after checking where it belongs, so a
pid that was reused by an unrelated process in the meantime is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from forgeline.sandbox.bwrap.kernfs import read_text

__all__ = ["KILL_POLL_S", "namespace_members", "pid_namespace", "pidfd_open", "pidfd_signal"]

#: How long to wait between rounds of killing (and checking what is left).
KILL_POLL_S = 0.02


def pid_namespace(pid: int) -> int | None:
    """The inode number of ``pid``'s pid namespace, or None if it cannot be read."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    try:
        return int(link.partition("[")[2].rstrip("]"))
    except ValueError:
        return None


def namespace_members(ns: int) -> list[int]:
    """Host pids of the live (non-zombie) processes in the pid namespace ``ns``."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid_namespace(pid) != ns:
                continue
            stat = read_text(Path(f"/proc/{pid}/stat")) or ""
            fields = stat.rpartition(")")[2].split()
            if fields and fields[0] not in ("Z", "X"):
                members.append(pid)
    return members


def pidfd_open(pid: int, ns: int | None = None) -> int | None:
    """A pidfd for ``pid`` (if ``ns`` is given: only if it is in that pid namespace)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if ns is not None and pid_namespace(pid) != ns:
        os.close(fd)
        return None
    return fd


def pidfd_signal(fd: int | None, sig: signal.Signals) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(fd, sig)
