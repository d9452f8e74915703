"""Small values in the kernel's files: /proc and the cgroup file system.

Reads never raise (None or empty when a file is missing or unreadable); ``write_value``
does, since a limit that could not be set must not pass silently.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["read_int", "read_keyed", "read_text", "write_value"]


def write_value(path: Path, value: str) -> None:
    with path.open("w") as fh:
        fh.write(value)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def read_keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (memory.events, cpu.stat, pids.events, memory.oom_control)."""
    result: dict[str, int] = {}
    for line in (read_text(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                result[parts[0]] = int(parts[1])
    return result
