"""A running preview, findable by id from any forgeline process on the same machine.

``start_preview`` leaves the app running, and a later process (``forgeline stop``, a
cancel, the end of a run in another terminal) must stop it. The events carry only the
preview's id; the machine-local facts live in a small record next to its log, under the
repository's ``.forgeline/previews/<task>/<id>.json``: the leader's pid, its process
group, its start time (clock ticks after boot, from ``/proc``), the boot it started in,
the port and the log. A pid alone could by then belong to another process; the record is
resolved to a process only while the start time and boot still match
(``sandbox.groups.stop_identified_group``), so a reused pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError

from forgeline.sandbox.groups import ProcessIdentity, identify, stop_identified_group
from forgeline.sandbox.spawner import SpawnedProcess
from forgeline.workspace.venv import repository_root

__all__ = [
    "PREVIEWS_DIR",
    "PreviewRecord",
    "preview_dir",
    "read_record",
    "stop_preview",
    "write_record",
]

#: Where a repository keeps its previews' logs and records, one directory per task.
PREVIEWS_DIR = PurePosixPath(".forgeline/previews")
_ID = re.compile(r"^[0-9a-f]{32}$")
_STOP_GRACE_S = 3.0


class PreviewRecord(BaseModel):
    """What identifies one running preview on this machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    pid: int
    pgid: int
    start_time: int
    """Clock ticks after boot when the leader started (``/proc/<pid>/stat``)."""
    boot_id: str
    port: int
    log_path: str

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.pgid, self.start_time, self.boot_id)


def preview_dir(repository: Path, task_id: str) -> Path:
    """The directory of a task's preview logs and records in ``repository``."""
    return repository / PREVIEWS_DIR / task_id


def _path(directory: Path, preview_id: str) -> Path | None:
    return directory / f"{preview_id}.json" if _ID.match(preview_id) else None


def write_record(
    directory: Path, process: SpawnedProcess, *, port: int, log_path: Path
) -> PreviewRecord | None:
    """Record the running ``process`` under a new id in ``directory``; None if it is no
    longer running (then there is nothing to find later)."""
    identity = identify(process.pid)
    if identity is None:
        return None
    record = PreviewRecord(
        id=uuid.uuid4().hex,
        pid=identity.pid,
        pgid=identity.pgid,
        start_time=identity.start_time,
        boot_id=identity.boot_id,
        port=port,
        log_path=str(log_path),
    )
    path = directory / f"{record.id}.json"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return record


def read_record(directory: Path, preview_id: str) -> PreviewRecord | None:
    """The record of ``preview_id`` in ``directory``; None if there is none (or it is not
    a record forgeline wrote)."""
    path = _path(directory, preview_id)
    if path is None:
        return None
    try:
        record = PreviewRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
    return record if record.id == preview_id else None


async def stop_preview(
    workspace: Path,
    task_id: str,
    preview_id: str | None,
    running: SpawnedProcess | None = None,
) -> int | None:
    """Stop the task's preview ``preview_id``; the pid that was stopped, or None if there
    was nothing (left) to stop.

    ``running`` is this process's own handle, when it started the preview: stopped
    directly. Otherwise the record in the repository of ``workspace`` (a task worktree) is
    resolved to its process, which is stopped only while it is still the process that was
    recorded. A preview recorded without an id (by an older forgeline) is never signalled
    from another process: its pid alone may name some other process by now. The record
    is removed either way.
    """
    directory: Path | None = None
    record: PreviewRecord | None = None
    if preview_id is not None:
        directory = preview_dir(await repository_root(workspace), task_id)
        record = read_record(directory, preview_id)
    stopped: int | None = None
    if running is not None and (record is None or running.pid == record.pid):
        if running.returncode is None:
            stopped = running.pid
        await running.stop()
    elif record is not None and await asyncio.to_thread(
        stop_identified_group, record.identity, _STOP_GRACE_S
    ):
        stopped = record.pid
    if directory is not None and preview_id is not None:
        path = _path(directory, preview_id)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
    return stopped
