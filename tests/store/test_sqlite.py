"""The SQLite backend: the shared contract plus what only a file-backed store has (a
damaged, truncated, locked or missing file)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forgeline.core.events import NewEvent
from forgeline.errors import StoreError
from forgeline.store import SQLiteEventStore, open_store
from forgeline.store.base import EventStore
from tests.store.contract import RewriteData, StoreContract, dispatched, initiated


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".forgeline" / "events.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[EventStore]:
    async with SQLiteEventStore(db) as s:
        yield s


@pytest.fixture
async def other(store: EventStore, db: Path) -> AsyncIterator[EventStore]:
    async with SQLiteEventStore(db) as s:
        yield s


@pytest.fixture
def absent(tmp_path: Path) -> EventStore:
    return SQLiteEventStore(tmp_path / "nothing" / ".forgeline" / "events.db", create=False)


@pytest.fixture
def rewrite_data(db: Path) -> RewriteData:
    async def rewrite(event_id: str, data: str) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE events SET data = ? WHERE id = ?", (data, event_id))

    return rewrite


class TestSQLiteContract(StoreContract):
    pass


async def test_events_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as s:
        written = await s.append("task-a", [initiated("a")])
        await s.save_checkpoint("coder", written[0].position)
    async with open_store(f"sqlite:///{path}", create=False) as s:
        assert await s.read_stream("task-a") == written
        assert await s.get_checkpoint("coder") == written[0].position


async def test_batch_of_appends_is_one_commit(tmp_path: Path) -> None:
    # Group commit: many concurrent appends are written by far fewer transactions.
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.open()
    events: list[NewEvent] = [initiated(str(i)) for i in range(200)]
    before = store.commit_count
    await asyncio.gather(*(store.append(e.stream_id, [e]) for e in events))
    commits = store.commit_count - before
    await store.close()
    assert commits < 20


async def test_opening_without_create_makes_no_file_or_directory(tmp_path: Path) -> None:
    path = tmp_path / "ws" / ".forgeline" / "forgeline.db"
    with pytest.raises(StoreError, match="no forgeline store at"):
        await SQLiteEventStore(path, create=False).open()
    assert not (tmp_path / "ws").exists()
    # a file that holds no forgeline tables is not a store either, and stays untouched
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="no forgeline store at"):
        await SQLiteEventStore(path, create=False).open()
    assert path.read_bytes() == b""


async def _filled(path: Path, tasks: int = 200) -> None:
    async with SQLiteEventStore(path) as s:
        await asyncio.gather(
            *(
                s.append(f"task-{i}", [initiated(str(i), "x" * 400), dispatched(str(i), "a")])
                for i in range(tasks)
            )
        )


async def _use(path: Path) -> None:
    """What a command does with a store: open it, read every stream, append."""
    async with SQLiteEventStore(path) as s:
        for event in await s.read_all(limit=100_000):
            await s.read_stream(event.stream_id)
        await s.append("task-new", [initiated("new")])


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda data: b"not a database!!" * 256 + data[4096:], "file is not a database"),
        (lambda data: data[: len(data) // 2], "database disk image is malformed"),
        (
            lambda data: data[:8192] + b"\xff" * 8192 + data[16384:],
            "database disk image is malformed",
        ),
    ],
    ids=["overwritten-header", "truncated", "garbled-pages"],
)
async def test_a_damaged_file_is_a_clear_error(tmp_path: Path, damage: object, says: str) -> None:
    path = tmp_path / "events.db"
    await _filled(path)
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StoreError) as info:
        await _use(path)
    message = str(info.value)
    assert f"the event store at {path} is damaged ({says}" in message
    assert "Restore it from a backup, or move it aside" in message


async def test_a_database_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _filled(path, tasks=1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        s = SQLiteEventStore(path)
        s.busy_timeout = 0.2
        async with s:
            # reading goes on beside the writer (WAL)
            assert [e.version for e in await s.read_stream("task-0")] == [1, 2]
            with pytest.raises(StoreError) as info:
                await s.append("task-b", [initiated("b")])
            assert f"the event store at {path} is locked" in str(info.value)
            assert "Let that process finish" in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with SQLiteEventStore(path) as s:  # and once it is done, appends go through
        await s.append("task-b", [initiated("b")])
        assert await s.stream_version("task-b") == 1
