from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forgeline.core.events import NewEvent
from forgeline.store import SQLiteEventStore, open_store
from forgeline.store.base import EventStore
from tests.store.contract import StoreContract, initiated


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with SQLiteEventStore(tmp_path / ".forgeline" / "events.db") as s:
        yield s


class TestSQLiteContract(StoreContract):
    pass


async def test_events_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as s:
        written = await s.append("task-a", [initiated("a")])
        await s.save_checkpoint("coder", written[0].position)
    async with open_store(f"sqlite:///{path}") as s:
        assert await s.read_stream("task-a") == written
        assert await s.get_checkpoint("coder") == written[0].position


async def test_batch_of_appends_is_one_commit(tmp_path: Path) -> None:
    # Group commit: many concurrent appends are written by far fewer transactions.
    import asyncio

    store = SQLiteEventStore(tmp_path / "events.db")
    await store.open()
    commits = 0
    original = store._commit_batch

    async def counting(requests: list) -> list:  # type: ignore[type-arg]
        nonlocal commits
        commits += 1
        return await original(requests)

    store._commit_batch = counting  # type: ignore[method-assign]
    events: list[NewEvent] = [initiated(str(i)) for i in range(200)]
    await asyncio.gather(*(store.append(e.stream_id, [e]) for e in events))
    await store.close()
    assert commits < 20
