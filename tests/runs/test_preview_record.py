"""A preview is stopped by its id from another process, and never through a reused pid."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.core.events import DeployStatus, PreviewStopped, RunSpec, parse_data
from forgeline.runs.preview import start_preview
from forgeline.runs.preview_record import (
    PreviewRecord,
    preview_dir,
    read_record,
    stop_preview,
)
from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.sandbox.groups import identify
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import ProcessSpawner
from tests.runs.test_preview import WEB_APP, alive, wait_gone, write

TASK = "t1"

# What `forgeline stop` does in its own process: resolve the id, stop what it names.
STOP_ELSEWHERE = """
import asyncio, sys
from pathlib import Path
from forgeline.runs.preview_record import stop_preview
print(asyncio.run(stop_preview(Path(sys.argv[1]), sys.argv[2], sys.argv[3])))
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture(params=[pytest.param("bwrap", marks=pytest.mark.sandbox), "local"])
def spawner(request: pytest.FixtureRequest) -> ProcessSpawner:
    if request.param == "bwrap":
        request.getfixturevalue("bwrap_ready")
        return BwrapSandbox(kill_grace=1.0)
    return LocalSpawner(kill_grace=1.0)


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Some other process of this user, leading its own group, that must live on."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def stop_in_another_process(workspace: Path, preview_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", STOP_ELSEWHERE, str(workspace), TASK, preview_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_a_preview_is_stopped_by_its_id_from_another_process(
    spawner: ProcessSpawner, workspace: Path
) -> None:
    write(workspace, "app.py", WEB_APP)
    spec = RunSpec(kind="web", command=("python", "app.py", "{port}"))
    records = preview_dir(workspace, TASK)  # not a git repository: its own repository
    result, process = await start_preview(
        spec, workspace, spawner, log_dir=records, startup_timeout=20
    )
    assert result.ok, result.output
    assert process is not None and result.preview_id is not None
    try:
        record = read_record(records, result.preview_id)
        assert record is not None
        assert (record.pid, record.pgid) == (process.pid, process.pid)
        assert record.port == int(result.url.rsplit(":", 1)[1].rstrip("/"))  # type: ignore[union-attr]
        assert Path(record.log_path).parent == records

        stopped = await asyncio.to_thread(stop_in_another_process, workspace, result.preview_id)
        assert stopped == str(process.pid)
        await asyncio.wait_for(process.wait(), 10)
        assert not (records / f"{result.preview_id}.json").exists()
        # Asked again, there is nothing left to stop.
        assert await asyncio.to_thread(stop_in_another_process, workspace, result.preview_id) == (
            "None"
        )
    finally:
        await process.stop(timeout=2)
    assert wait_gone(process.pid)


def recorded(directory: Path, proc: subprocess.Popen[bytes], start_time_shift: int) -> str:
    """Write a record for ``proc``'s pid, as if taken of a process that started
    ``start_time_shift`` clock ticks earlier (0: of ``proc`` itself); its id."""
    identity = identify(proc.pid)
    assert identity is not None
    record = PreviewRecord(
        id="ab" * 16,
        pid=identity.pid,
        pgid=identity.pgid,
        start_time=identity.start_time - start_time_shift,
        boot_id=identity.boot_id,
        port=1,
        log_path=str(directory / "preview-1.log"),
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{record.id}.json").write_text(record.model_dump_json())
    return record.id


async def test_a_record_whose_pid_was_reused_is_not_signalled(
    workspace: Path, bystander: subprocess.Popen[bytes]
) -> None:
    records = preview_dir(workspace, TASK)
    # The preview this record was about is gone; its pid now belongs to the bystander,
    # which started at another time.
    preview_id = recorded(records, bystander, start_time_shift=50)
    assert await stop_preview(workspace, TASK, preview_id) is None
    await asyncio.sleep(0.2)
    assert bystander.poll() is None and alive(bystander.pid)
    assert not (records / f"{preview_id}.json").exists()

    # The same record with the bystander's own start time does stop it: the check above
    # was the start time, nothing else.
    preview_id = recorded(records, bystander, start_time_shift=0)
    assert await stop_preview(workspace, TASK, preview_id) == bystander.pid
    assert bystander.wait(timeout=10) is not None


async def test_ids_that_are_not_records_stop_nothing(
    workspace: Path, bystander: subprocess.Popen[bytes]
) -> None:
    records = preview_dir(workspace, TASK)
    preview_id = recorded(records, bystander, start_time_shift=0)
    for bad in ("../" + preview_id, preview_id.upper(), "", "x" * 32):
        assert await stop_preview(workspace, TASK, bad) is None
    # A preview recorded by an older forgeline has no id: never signalled by pid.
    assert await stop_preview(workspace, TASK, None) is None
    (records / f"{preview_id}.json").write_text("{not json")
    assert await stop_preview(workspace, TASK, preview_id) is None
    assert bystander.poll() is None
    assert os.getpgid(bystander.pid) == bystander.pid


def test_events_recorded_before_preview_ids_still_read() -> None:
    deployed = parse_data(
        '{"type": "deploy.status", "ok": true, "kind": "web", '
        '"url": "http://127.0.0.1:8000/", "pid": 4242, "output": ""}'
    )
    assert isinstance(deployed, DeployStatus)
    assert (deployed.pid, deployed.preview_id) == (4242, None)
    stopped = parse_data('{"type": "preview.stopped", "pid": 4242}')
    assert isinstance(stopped, PreviewStopped)
    assert (stopped.pid, stopped.preview_id) == (4242, None)
