"""The embedded event store: one SQLite file in WAL mode with durable (FULL) commits.

All writes run on one connection, so positions are assigned in commit order: taking the
write lock (``BEGIN IMMEDIATE``, which may wait for another process) and the durable
``COMMIT`` run on the writer thread, the statements in between on the event loop's thread
(they only touch SQLite's page cache). Reads run on the event loop's thread too, on a
connection that never waits (a WAL read needs no lock); should it find the database busy,
the read goes to the reader thread's connection instead. Handing a short indexed query to
a thread would cost more than the query.

Errors are recognised by SQLite's extended result code (``sqlite_errorcode``), and which
unique constraint an insert broke by looking the row's keys up, never by message text.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from forgeline.errors import StoreError
from forgeline.store.base import EventStore
from forgeline.store.dialect import Dialect
from forgeline.store.migrations import Migration, check, missing_store
from forgeline.store.projections import FINAL_STATUSES_SQL
from forgeline.store.recorder import Conflict, Constraint, Recorder, Rejected, Statement
from forgeline.store.rows import EVENT_COLUMNS, INSERT_COLUMNS, Row

T = TypeVar("T")

_TASK_COLUMNS = "id, status, current_phase, request, created_at, updated_at"
_AGENT_COLUMNS = "position, task_id, actor, event_type, created_at"

SQLITE = Dialect(
    select_stream=f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ?"
    " ORDER BY version",
    select_all=f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
    select_version="SELECT MAX(version) FROM events WHERE stream_id = ?",
    select_checkpoint="SELECT position FROM checkpoints WHERE subscriber = ?",
    select_tasks=f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY created_at, id",
    select_task=f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?",
    select_agent_events=f"SELECT {_AGENT_COLUMNS} FROM agent_events ORDER BY position",
    select_task_agent_events=f"SELECT {_AGENT_COLUMNS} FROM agent_events WHERE task_id = ?"
    " ORDER BY position",
    stream_versions="SELECT stream_id, MAX(version) FROM events WHERE stream_id IN ({list})"
    " GROUP BY stream_id",
    insert_event=f"INSERT INTO events ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    set_checkpoints="INSERT INTO checkpoints (subscriber, position) VALUES (?, ?)"
    " ON CONFLICT (subscriber) DO UPDATE SET position = MAX(position, excluded.position)",
    read_models={
        "insert_tasks": f"INSERT OR REPLACE INTO tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        "move_tasks": "UPDATE tasks SET status = ?2, current_phase = ?3, updated_at = ?4"
        f" WHERE id = ?1 AND status NOT IN {FINAL_STATUSES_SQL}",
        "insert_agent_events": f"INSERT OR REPLACE INTO agent_events ({_AGENT_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?)",
    },
    forgeline_tables="SELECT name FROM sqlite_master"
    " WHERE type = 'table' AND name IN ('events', 'schema_version')",
    schema_version="SELECT MAX(version) FROM schema_version",
    record_version="INSERT INTO schema_version (version, summary, applied_at) VALUES (?, ?, ?)",
)

MIGRATIONS: Sequence[Migration] = check(
    (
        Migration(
            1,
            "events, checkpoints, the tasks and agent_events read models, schema versions",
            (
                """
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
                )
                """,
                "CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause"
                " ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL",
                """
                CREATE TABLE IF NOT EXISTS checkpoints (
                    subscriber TEXT PRIMARY KEY,
                    position INTEGER NOT NULL
                )
                """,
                """
                CREATE TABLE IF NOT EXISTS tasks (
                    id TEXT PRIMARY KEY,
                    status TEXT NOT NULL,
                    current_phase TEXT NOT NULL,
                    request TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
                """
                CREATE TABLE IF NOT EXISTS agent_events (
                    position INTEGER PRIMARY KEY,
                    task_id TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    created_at TEXT NOT NULL
                )
                """,
                "CREATE INDEX IF NOT EXISTS agent_events_task ON agent_events (task_id, position)",
                """
                CREATE TABLE IF NOT EXISTS schema_version (
                    version INTEGER PRIMARY KEY,
                    summary TEXT NOT NULL,
                    applied_at TEXT NOT NULL
                )
                """,
            ),
        ),
    )
)

_UNIQUE_KEYS: tuple[Constraint, ...] = ("event_id", "stream_version", "once_per_cause")
"""The unique keys of ``events``, in the order ``_refusal`` looks them up."""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _code(exc: sqlite3.Error) -> int | None:
    """The primary result code of ``exc`` (None for errors of the module itself)."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def sqlite_error(path: Path, action: str, exc: sqlite3.Error, busy_timeout: float) -> StoreError:
    """``exc`` as a ``StoreError`` that names the file and what to do."""
    code = _code(exc)
    if code in _BUSY:
        return StoreError(
            f"the event store at {path} is locked: another process kept it busy for more than"
            f" {busy_timeout:g} s. Let that process finish (or stop it), then try again"
        )
    if code in _DAMAGED:
        return StoreError(
            f"the event store at {path} is damaged ({exc}): forgeline cannot read it. Restore"
            " it from a backup, or move it aside to start an empty store"
            f" (`sqlite3 {path} .recover` may rescue the events it still holds)"
        )
    if code == sqlite3.SQLITE_READONLY:
        return StoreError(
            f"the event store at {path} is read-only ({exc}): give this user write access to"
            " the file and its directory"
        )
    if code == sqlite3.SQLITE_FULL:
        return StoreError(f"the disk holding the event store at {path} is full: free some space")
    if code == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            f"cannot open the event store at {path} ({exc}): check that its directory exists"
            " and that this user may write there"
        )
    return StoreError(f"{action} the event store at {path}: {exc}")


def _params(row: Sequence[Any]) -> list[Any]:
    """``row`` as SQLite parameters: timestamps as ISO text."""
    return [v.isoformat() if isinstance(v, datetime) else v for v in row]


class SQLiteRecorder(Recorder):
    dialect = SQLITE
    driver_error = sqlite3.Error

    def __init__(
        self, conn: sqlite3.Connection, writer: ThreadPoolExecutor, path: Path, busy: float
    ) -> None:
        super().__init__()
        self._conn = conn
        self._writer = writer
        self._path = path
        self._busy = busy

    def translate(self, action: str, exc: Exception) -> StoreError:
        assert isinstance(exc, sqlite3.Error)
        return sqlite_error(self._path, action, exc, self._busy)

    async def _on_writer(self, work: Callable[[], object]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, work)

    async def _begin(self) -> None:
        await self._on_writer(lambda: self._conn.execute("BEGIN IMMEDIATE"))

    async def _commit(self) -> None:
        await self._on_writer(lambda: self._conn.execute("COMMIT"))

    async def _rollback(self) -> None:
        def rollback() -> None:  # on the writer thread, after a BEGIN still queued there
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

        await self._on_writer(rollback)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        if params and isinstance(params[0], list):  # the one list parameter: ``{list}``
            [items] = params
            sql, params = sql.format(list=", ".join("?" * len(items))), items
        return self._conn.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, _params(params))

    async def insert(self, rows: Sequence[Row]) -> list[int]:
        positions: list[int] = []
        for row in rows:
            *columns, created_at = row  # INSERT_COLUMNS: created_at last
            try:
                cursor = self._conn.execute(
                    self.dialect.insert_event, (*columns, created_at.isoformat())
                )
            except sqlite3.IntegrityError as exc:
                raise self._refusal(exc, row) from exc
            assert cursor.lastrowid is not None
            positions.append(cursor.lastrowid)
        return positions

    def _refusal(self, exc: sqlite3.IntegrityError, row: Row) -> Exception:
        """Which constraint refused the event row ``row``: its keys are looked up."""
        if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
            id_, stream_id, version, type_, _data, _corr, cause, *_ = row
            found = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?),"
                " EXISTS (SELECT 1 FROM events WHERE stream_id = ? AND version = ?),"
                " EXISTS (SELECT 1 FROM events"
                " WHERE stream_id = ? AND causation_id = ? AND type = ?)",
                (id_, stream_id, version, stream_id, cause, type_),
            ).fetchone()
            for hit, constraint in zip(found, _UNIQUE_KEYS, strict=True):
                if hit:
                    return Conflict(constraint)
        return Rejected(str(exc))

    async def run(self, statements: Sequence[Statement], last_position: int | None) -> None:
        for sql, rows in statements:
            try:
                if len(rows) == 1:
                    self._conn.execute(sql, _params(rows[0]))
                else:
                    self._conn.executemany(sql, [_params(row) for row in rows])
            except sqlite3.IntegrityError as exc:
                raise Rejected(str(exc)) from exc


class SQLiteEventStore(EventStore):
    dialect = SQLITE
    migrations = MIGRATIONS
    busy_timeout = 10.0
    """Seconds a write waits for another process's write to finish."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        super().__init__(create=create)
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="forgeline-sqlite-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="forgeline-sqlite-r")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lconn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        return sqlite_error(self.path, action, exc, self.busy_timeout)

    # ------------------------------------------------------------------ plumbing

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    async def _open(self) -> Recorder:
        if not self.create and not self.path.exists():
            raise missing_store(self.location)

        def setup() -> tuple[sqlite3.Connection, sqlite3.Connection, sqlite3.Connection]:
            opened: list[sqlite3.Connection] = []
            try:
                if self.create:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                opened.append(self._connect(self.busy_timeout))
                # (not in a file that holds no store and may not become one)
                if self.create or opened[0].execute(SQLITE.forgeline_tables).fetchone():
                    opened[0].execute("PRAGMA journal_mode = WAL")
                opened.append(self._connect(self.busy_timeout))
                opened.append(self._connect(0))
            except BaseException as exc:
                for conn in opened:
                    conn.close()
                if isinstance(exc, sqlite3.Error):
                    raise self._error("cannot open", exc) from exc
                if isinstance(exc, OSError):
                    raise StoreError(f"cannot open the event store at {self.path}: {exc}") from exc
                raise
            return opened[0], opened[1], opened[2]

        writer, self._rconn, self._lconn = await self._on(self._writer, setup)
        self._wconn = writer
        return SQLiteRecorder(writer, self._writer, self.path, self.busy_timeout)

    async def _close(self) -> None:
        for conn, pool in ((self._wconn, self._writer), (self._rconn, self._reader)):
            if conn is not None:
                await self._on(pool, conn.close)
            pool.shutdown(wait=True)
        if self._lconn is not None:
            self._lconn.close()
        self._wconn = self._rconn = self._lconn = None

    # --------------------------------------------------------------------- reads

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """Rows of a short read, on this thread unless the database is busy."""
        if self._lconn is None or self._rconn is None:
            raise StoreError(f"the event store at {self.path} is not open")
        here, there = self._lconn, self._rconn
        try:
            try:
                return here.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if _code(exc) not in _BUSY:
                    raise
            return await self._on(self._reader, lambda: there.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise self._error("cannot read from", exc) from exc
