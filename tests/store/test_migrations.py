"""Schema versions on both backends: a store written before versions is upgraded in place
and reads back; pending migrations apply once, in order, all or nothing; a store newer
than this forgeline is refused, naming both versions."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from forgeline.core.events import PlanItemDispatched, TaskInitiated, TestResults
from forgeline.errors import StoreError
from forgeline.store.migrations import Migration
from forgeline.store.postgres import PostgresEventStore
from forgeline.store.sqlite import SQLiteEventStore
from tests.store.conftest import Backend
from tests.store.contract import dispatched, initiated
from tests.store.previous_schema import EVENTS, write_previous_store

LATEST = SQLiteEventStore.migrations[-1].version


def test_both_backends_number_their_migrations_alike() -> None:
    sqlite = [(m.version, m.summary) for m in SQLiteEventStore.migrations]
    postgres = [(m.version, m.summary) for m in PostgresEventStore.migrations]
    assert sqlite == postgres
    assert [v for v, _ in sqlite] == list(range(1, LATEST + 1))


async def test_a_store_from_before_schema_versions_is_upgraded_and_reads_back(
    backend: Backend,
) -> None:
    await write_previous_store(backend)
    # an existing store, even from before versions: opening it without create works
    async with backend.store(create=False) as store:
        log = await store.read_all()
        assert [(e.position, e.id, e.stream_id, e.version, e.type) for e in log] == [
            row[:5] for row in EVENTS
        ]
        assert [e.created_at for e in log] == [datetime.fromisoformat(row[9]) for row in EVENTS]
        assert [(e.correlation_id, e.causation_id, e.actor) for e in log] == [
            row[6:9] for row in EVENTS
        ]
        a = await store.read_stream("task-a")
        assert isinstance(a[0].data, TaskInitiated) and a[0].data.request == "todo cli"
        assert isinstance(a[1].data, PlanItemDispatched) and a[1].data.item_id == "1"
        assert isinstance(a[2].data, TestResults)
        assert (a[2].data.failing, a[2].data.output) == (("t::x",), "boom\x00")
        assert await store.get_checkpoint("coder") == 3
        rows = [(t.id, t.status, t.current_phase, t.request) for t in await store.tasks()]
        assert rows == [
            ("a", "running", "fixer", "todo cli"),
            ("b", "cancelled", "done", "a web app"),
        ]
        assert len(await store.agent_events()) == 5
        # and it goes on from where it was
        [more] = await store.append("task-a", [dispatched("a", "2")], expected_version=3)
        assert (more.version, more.position) == (4, 6)
    assert await backend.query("SELECT version FROM schema_version") == [(LATEST,)]
    async with backend.store() as store:  # opening again migrates nothing
        assert [e.id for e in await store.read_stream("task-a")][-1] == more.id
    assert await backend.query("SELECT version FROM schema_version") == [(LATEST,)]


async def test_a_store_newer_than_this_forgeline_is_refused(backend: Backend) -> None:
    async with backend.store() as store:
        [event] = await store.append("task-a", [initiated("a")])
    await backend.execute(
        "INSERT INTO schema_version (version, summary, applied_at)"
        f" VALUES ({LATEST + 1}, 'from the future', '2030-01-01T00:00:00+00:00')"
    )
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            await backend.store(create=create).open()
        message = str(info.value)
        assert f"has schema version {LATEST + 1}" in message
        assert f"knows versions up to {LATEST}" in message
        assert "a newer forgeline has upgraded it" in message
    rows = await backend.query("SELECT id FROM events")
    assert rows == [(event.id,)]


def _later(backend: Backend, *extra: Migration) -> type:
    """The backend's store class as a forgeline with ``extra`` migrations would have it."""
    base = backend.store_class
    return type(f"Later{base.__name__}", (base,), {"migrations": (*base.migrations, *extra)})


ADD_NOTE = Migration(
    LATEST + 1,
    "a note on each task",
    ("ALTER TABLE tasks ADD COLUMN note TEXT", "UPDATE tasks SET note = 'noted'"),
)
BROKEN = Migration(LATEST + 2, "broken", ("ALTER TABLE no_such_table ADD COLUMN x TEXT",))


async def test_pending_migrations_apply_in_order_once_and_all_or_nothing(
    backend: Backend,
) -> None:
    async with backend.store() as store:
        written = await store.append("task-a", [initiated("a")])
    # a failing migration leaves the store as it was, the good one before it included
    with pytest.raises(StoreError) as info:
        await backend.store(_later(backend, ADD_NOTE, BROKEN)).open()
    assert "no_such_table" in str(info.value)
    assert await backend.query("SELECT MAX(version) FROM schema_version") == [(LATEST,)]
    with pytest.raises(Exception, match="note"):
        await backend.query("SELECT note FROM tasks")
    # the next version applies in place, once, and the events read back
    later = _later(backend, ADD_NOTE)
    async with backend.store(later) as store:
        assert await store.read_stream("task-a") == written
    async with backend.store(later) as store:
        assert await store.read_stream("task-a") == written
    assert await backend.query("SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, LATEST + 2)
    ]
    assert await backend.query("SELECT id, note FROM tasks") == [("a", "noted")]
    # and this forgeline, which knows one version less, refuses it
    with pytest.raises(StoreError, match=f"has schema version {LATEST + 1}"):
        await backend.store().open()


async def test_stores_opening_one_new_database_at_once_create_it_once(
    backend: Backend,
) -> None:
    stores = [backend.store() for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        await asyncio.gather(
            *(s.append(f"task-{i}", [initiated(str(i))]) for i, s in enumerate(stores))
        )
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert await backend.query("SELECT version FROM schema_version") == [(LATEST,)]
    assert len(await backend.query("SELECT id FROM events")) == 4
