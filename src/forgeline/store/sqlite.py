"""The embedded event store: one SQLite file in WAL mode with durable (FULL) commits.

All writes run on one thread with one connection, so positions are assigned in commit
order; reads use a second connection (WAL lets them run beside a write). Reading a stream
or a page of the log is a short indexed query that never waits for a writer in WAL mode,
so it runs on the event loop's thread (a third connection, which never waits: should it
find the database busy, the read goes to the reader thread instead); handing it to a thread
would cost more than the query.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from forgeline.core.events import Event, dump_data
from forgeline.errors import ConcurrencyError, DuplicateEventError, StoreError
from forgeline.store.base import (
    EVENT_COLUMNS,
    AgentEventRow,
    AppendRequest,
    BatchResult,
    EventStore,
    Group,
    TaskRow,
    event_from_row,
    recorded_event,
)
from forgeline.store.projections import FINAL_STATUSES_SQL, task_update

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause
    ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS checkpoints (
    subscriber TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    current_phase TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_events (
    position INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    event_type TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_events_task ON agent_events (task_id, position);
"""


class SQLiteEventStore(EventStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="forgeline-sqlite-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="forgeline-sqlite-r")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lconn: sqlite3.Connection | None = None
        self._wlock = asyncio.Lock()
        """Held while the write connection is in a transaction."""

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    # ------------------------------------------------------------------ plumbing

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    def _connect(self, busy_timeout: int = 10000) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    async def _open(self) -> None:
        if self._wconn is not None:
            return

        def setup() -> tuple[sqlite3.Connection, sqlite3.Connection, sqlite3.Connection]:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                w = self._connect()
                w.execute("PRAGMA journal_mode = WAL")
                w.executescript(SCHEMA)
                return w, self._connect(), self._connect(busy_timeout=0)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open the event store at {self.path}: {exc}") from exc

        self._wconn, self._rconn, self._lconn = await self._on(self._writer, setup)

    async def _close(self) -> None:
        for conn, pool in ((self._wconn, self._writer), (self._rconn, self._reader)):
            if conn is not None:
                await self._on(pool, conn.close)
            pool.shutdown(wait=True)
        if self._lconn is not None:
            self._lconn.close()
        self._wconn = self._rconn = self._lconn = None

    def _w(self) -> sqlite3.Connection:
        if self._wconn is None:
            raise StoreError("the event store is not open")
        return self._wconn

    def _r(self) -> sqlite3.Connection:
        if self._rconn is None:
            raise StoreError("the event store is not open")
        return self._rconn

    # -------------------------------------------------------------------- writes

    async def _commit_batch(self, groups: list[Group]) -> BatchResult:
        # Taking the write lock (which may wait for another process) and the durable
        # COMMIT run on the writer thread; the statements in between only touch SQLite's
        # page cache and run here, sparing the writer a wait for the interpreter lock
        # before each of them.
        conn = self._w()
        async with self._wlock:
            await self._on(self._writer, lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                results = self._write(conn, groups)
                await self._on(self._writer, lambda: conn.execute("COMMIT"))
            except BaseException:
                if conn.in_transaction:
                    await asyncio.shield(self._on(self._writer, lambda: conn.execute("ROLLBACK")))
                raise
        return results

    def _write(self, conn: sqlite3.Connection, groups: list[Group]) -> BatchResult:
        results: BatchResult = []
        for group in groups:
            conn.execute("SAVEPOINT req")
            try:
                results.append([self._write_one(conn, request) for request in group])
                conn.execute("RELEASE req")
            except (StoreError, sqlite3.IntegrityError) as exc:
                conn.execute("ROLLBACK TO req")
                conn.execute("RELEASE req")
                results.append(exc if isinstance(exc, StoreError) else StoreError(str(exc)))
        return results

    def _write_one(self, conn: sqlite3.Connection, request: AppendRequest) -> list[Event]:
        if not request.events and request.expected_version is None:
            if request.checkpoint is not None:
                self._set_checkpoint(conn, *request.checkpoint)
            return []
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?",
            (request.stream_id,),
        ).fetchone()
        version: int = row[0]
        if request.expected_version is not None and request.expected_version != version:
            raise ConcurrencyError(request.stream_id, request.expected_version, version)
        recorded: list[Event] = []
        for event in request.events:
            version += 1
            try:
                cursor = conn.execute(
                    "INSERT INTO events (id, stream_id, version, type, data, correlation_id,"
                    " causation_id, actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        event.stream_id,
                        version,
                        event.type,
                        dump_data(event.data),
                        event.correlation_id,
                        event.causation_id,
                        event.actor,
                        event.created_at.isoformat(),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "causation_id" in str(exc) or "events.id" in str(exc):
                    raise DuplicateEventError(
                        event.stream_id, event.causation_id, event.type
                    ) from exc
                if "stream_id, events.version" in str(exc):
                    raise ConcurrencyError(request.stream_id, version - 1, version) from exc
                raise StoreError(f"cannot append event {event.id}: {exc}") from exc
            assert cursor.lastrowid is not None
            recorded.append(recorded_event(event, version, cursor.lastrowid))
        for event in recorded:
            self._project(conn, event)
        if request.checkpoint is not None:
            self._set_checkpoint(conn, *request.checkpoint)
        return recorded

    @staticmethod
    def _project(conn: sqlite3.Connection, event: Event) -> None:
        update = task_update(event)
        if update is None:
            return
        at = event.created_at.isoformat()
        if update.request is not None:
            conn.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                (update.task_id, update.status, update.phase, update.request, at, at),
            )
        elif update.status is not None:
            conn.execute(
                "UPDATE tasks SET status = ?, current_phase = ?, updated_at = ?"
                f" WHERE id = ? AND status NOT IN {FINAL_STATUSES_SQL}",
                (update.status, update.phase, at, update.task_id),
            )
        conn.execute(
            "INSERT OR REPLACE INTO agent_events VALUES (?, ?, ?, ?, ?)",
            (event.position, update.task_id, event.actor, event.type, at),
        )

    @staticmethod
    def _set_checkpoint(conn: sqlite3.Connection, subscriber: str, position: int) -> None:
        conn.execute(
            "INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT (subscriber) DO UPDATE"
            " SET position = MAX(position, excluded.position)",
            (subscriber, position),
        )

    async def rebuild_projections(self) -> None:
        def rebuild() -> None:
            conn = self._w()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM tasks")
                conn.execute("DELETE FROM agent_events")
                query = f"SELECT {EVENT_COLUMNS} FROM events ORDER BY position"
                rows = conn.execute(query).fetchall()
                for row in rows:
                    self._project(conn, event_from_row(row))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        async with self._wlock:
            await self._on(self._writer, rebuild)

    # --------------------------------------------------------------------- reads

    async def _select(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of a short read, on this thread unless the database is busy."""
        if self._lconn is None:
            raise StoreError("the event store is not open")
        try:
            return self._lconn.execute(query, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await self._on(self._reader, lambda: self._r().execute(query, params).fetchall())

    async def _read_stream(self, stream_id: str, after_version: int) -> list[Event]:
        rows = await self._select(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ?"
            " ORDER BY version",
            (stream_id, after_version),
        )
        return [self._from_row(r) for r in rows]

    async def _read_all(self, after: int, limit: int) -> list[Event]:
        rows = await self._select(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [self._from_row(r) for r in rows]

    async def _get_checkpoint(self, subscriber: str) -> int:
        def read() -> int:
            row = (
                self._r()
                .execute("SELECT position FROM checkpoints WHERE subscriber = ?", (subscriber,))
                .fetchone()
            )
            return int(row[0]) if row else 0

        return await self._on(self._reader, read)

    async def tasks(self) -> list[TaskRow]:
        def read() -> list[TaskRow]:
            rows = self._r().execute("SELECT * FROM tasks ORDER BY created_at, id")
            return [_task_row(r) for r in rows]

        return await self._on(self._reader, read)

    async def task(self, task_id: str) -> TaskRow | None:
        def read() -> TaskRow | None:
            row = self._r().execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return _task_row(row) if row else None

        return await self._on(self._reader, read)

    async def agent_events(self, task_id: str | None = None) -> list[AgentEventRow]:
        def read() -> list[AgentEventRow]:
            if task_id is None:
                rows = self._r().execute("SELECT * FROM agent_events ORDER BY position")
            else:
                rows = self._r().execute(
                    "SELECT * FROM agent_events WHERE task_id = ? ORDER BY position", (task_id,)
                )
            return [AgentEventRow(p, t, a, e, datetime.fromisoformat(c)) for p, t, a, e, c in rows]

        return await self._on(self._reader, read)


def _task_row(row: tuple[Any, ...]) -> TaskRow:
    id_, status, phase, request, created, updated = row
    return TaskRow(
        id_,
        status,
        phase,
        request,
        datetime.fromisoformat(created),
        datetime.fromisoformat(updated),
    )
