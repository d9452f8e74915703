"""The Postgres backend: the shared contract plus what only a server-backed store has
(several writer processes, connection errors). Each test gets a fresh, empty schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from forgeline.core.events import NewEvent, TestResults
from forgeline.errors import StoreError
from forgeline.store import open_store
from forgeline.store.base import EventStore
from forgeline.store.postgres import PostgresEventStore, redact_url
from tests.conftest import free_port
from tests.store.contract import RewriteData, StoreContract, dispatched, initiated

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(schema_url: str) -> AsyncIterator[EventStore]:
    async with PostgresEventStore(schema_url) as s:
        yield s


@pytest.fixture
async def other(store: EventStore, schema_url: str) -> AsyncIterator[EventStore]:
    async with PostgresEventStore(schema_url) as s:
        yield s


@pytest.fixture
def absent(schema_url: str) -> EventStore:
    return PostgresEventStore(schema_url, create=False)


@pytest.fixture
def rewrite_data(schema_url: str) -> RewriteData:
    async def rewrite(event_id: str, data: str) -> None:
        async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
            await conn.execute("UPDATE events SET data = %s WHERE id = %s", (data, event_id))

    return rewrite


class TestPostgresContract(StoreContract):
    pass


async def test_events_survive_reopening_and_round_trip_nul(schema_url: str) -> None:
    # A NUL (from a process's output, say) is fine in the payload: data is TEXT, not JSONB.
    results = NewEvent(
        stream_id="task-a",
        data=TestResults(commit="c", passed=1, failed=0, output="bin\x00ary"),
        correlation_id="a",
        actor="tester",
    )
    async with PostgresEventStore(schema_url) as s:
        written = await s.append("task-a", [initiated("a"), results])
        await s.save_checkpoint("coder", written[0].position)
    async with open_store(schema_url) as s:
        assert isinstance(s, PostgresEventStore)
        assert await s.read_stream("task-a") == written
        assert await s.get_checkpoint("coder") == written[0].position
        assert [t.id for t in await s.tasks()] == ["a"]


async def test_two_writers_keep_positions_in_commit_order(schema_url: str) -> None:
    """Two stores (two connections, as two processes would have) append at once while a
    third follows the log: the follower sees every event exactly once, in position order,
    and the stream both write to keeps dense versions."""
    per_task, tasks_per_writer = 40, 4
    total = 2 * tasks_per_writer * per_task * 2
    async with contextlib.AsyncExitStack() as stack:
        writers = [await stack.enter_async_context(PostgresEventStore(schema_url)) for _ in "ab"]
        follower = await stack.enter_async_context(PostgresEventStore(schema_url))
        follower.poll_interval = 0.001
        stop, caught_up = asyncio.Event(), asyncio.Event()
        seen: list[int] = []
        last = 0  # the log's last position, once every writer is done

        async def follow() -> None:
            async for event in follower.follow(after=0, stop=stop, batch=50):
                seen.append(event.position)
                if last and event.position >= last:
                    caught_up.set()

        async def write(w: int, t: int) -> None:
            s = writers[w]
            for i in range(per_task):
                await s.append("task-shared", [dispatched("shared", f"{w}.{t}.{i}")])
                await s.append(f"task-w{w}t{t}", [dispatched(f"w{w}t{t}", str(i))])

        reader = asyncio.create_task(follow())
        try:
            await asyncio.gather(
                *(write(w, t) for w in range(len(writers)) for t in range(tasks_per_writer))
            )
            log = await follower.read_all(after=0, limit=10 * total)
            assert len(log) == total
            last = log[-1].position
            if seen and seen[-1] >= last:
                caught_up.set()
            await asyncio.wait_for(caught_up.wait(), 30)
        finally:
            stop.set()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        missed = sorted({e.position for e in log} - set(seen))
        assert not missed, f"the follower skipped positions that committed late: {missed}"
        assert seen == [e.position for e in log]

        shared = await follower.read_stream("task-shared")
        assert [e.version for e in shared] == list(range(1, total // 2 + 1))
        for w in range(len(writers)):
            for t in range(tasks_per_writer):
                own = await follower.read_stream(f"task-w{w}t{t}")
                assert [e.version for e in own] == list(range(1, per_task + 1))


async def test_a_follower_is_woken_by_another_process_commit_not_by_polling(
    schema_url: str,
) -> None:
    """Commits are pushed (LISTEN/NOTIFY): a follower whose poll would not fire for an hour
    still sees, at once, what another store (another process's connections) appends."""
    async with PostgresEventStore(schema_url) as writer, PostgresEventStore(schema_url) as reader:
        reader.poll_interval = 3600
        seen: list[str] = []
        first = asyncio.Event()

        async def follow() -> None:
            async for event in reader.follow(after=0):
                seen.append(event.stream_id)
                first.set()
                if len(seen) == 3:
                    return

        following = asyncio.create_task(follow())
        try:
            await asyncio.sleep(0.2)  # the follower has read the empty log and waits
            assert not seen
            await writer.append("task-a", [initiated("a")])
            await asyncio.wait_for(first.wait(), 30)
            await writer.append("task-b", [initiated("b")])
            await writer.append("task-c", [initiated("c")])
            await asyncio.wait_for(following, 30)
        finally:
            following.cancel()
        assert seen == ["task-a", "task-b", "task-c"]
        # and wait_for_append returns for another process's commit, with nothing local
        mark = reader.commit_count
        waiting = asyncio.create_task(reader.wait_for_append(mark))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await writer.append("task-d", [initiated("d")])
        await asyncio.wait_for(waiting, 30)


async def test_lost_connections_fail_one_batch_clearly_then_reconnect(
    schema_url: str,
) -> None:
    async with PostgresEventStore(schema_url) as store, PostgresEventStore(schema_url) as other:
        [first] = await store.append("task-a", [initiated("a")])
        # the server ends every forgeline connection (as a restart would)
        async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'forgeline' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError) as info:
            await store.append("task-a", [dispatched("a", "1")])
        assert "cannot append to the event store at" in str(info.value)
        [second] = await store.append("task-a", [dispatched("a", "2")])
        assert second.version == 2
        assert await other.read_stream("task-a") == [first, second]


async def test_unreachable_server_is_a_clear_store_error() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://forgeline:hunter2secret@127.0.0.1:{port}/events"
    store = PostgresEventStore(url)
    store.connect_timeout = 5
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert "hunter2secret" not in message
    assert f"postgresql://forgeline@127.0.0.1:{port}/events" in message
    assert "cannot connect" in message
    assert "hunter2secret" not in repr(store)


def test_redact_url_drops_passwords() -> None:
    assert redact_url("postgresql://u:p%40ss@h:5432/db?password=x&sslmode=require") == (
        "postgresql://u@h:5432/db?sslmode=require"
    )
    assert redact_url("postgresql://h/db") == "postgresql://h/db"
    assert "secret" not in redact_url("host=h password=secret dbname=db")
