"""The Postgres backend: the shared contract plus what only a server-backed store has
(several writer processes, connection errors). Each test gets a fresh, empty schema."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from forgeline.core.events import NewEvent, TestResults
from forgeline.errors import StoreError
from forgeline.store import open_store
from forgeline.store.base import EventStore
from forgeline.store.postgres import PostgresEventStore, redact_url
from tests.conftest import free_port
from tests.store.contract import StoreContract, dispatched, initiated

pytestmark = pytest.mark.postgres


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    options = " ".join(v for k, v in query if k == "options")
    query = [(k, v) for k, v in query if k != "options"]
    query.append(("options", f"{options} -c search_path={schema}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture
async def schema_url(postgres_url: str) -> AsyncIterator[str]:
    """A URL whose tables live in a new, empty schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield with_search_path(postgres_url, schema)
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def store(schema_url: str) -> AsyncIterator[EventStore]:
    async with PostgresEventStore(schema_url) as s:
        yield s


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
