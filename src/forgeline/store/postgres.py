"""The scaled event store: Postgres through psycopg 3 (async), durable commits.

One connection writes (the group committer hands it one batch at a time); reads share a
few connections (``read_connections``); one more listens. Every write transaction first
takes a transaction-level advisory lock, so batches from any number of processes assign
positions one after another and commit in that order: a subscriber reading
``position > N`` never misses an event that commits later with a lower position.

A batch is written whole in about three round trips (the streams' versions, every insert
sent together with ``executemany``, every read-model statement and the checkpoints
pipelined, as one statement each over ``unnest`` of the batch's rows). Each commit that
recorded events sends ``NOTIFY forgeline_events`` with its last position, in the same
pipeline; every store listening on that database wakes its subscribers at once, so the
poll (``poll_interval``) is only a safety net. Errors are recognised by SQLSTATE and,
for a unique violation, by the constraint's name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from forgeline.errors import StoreError
from forgeline.store.base import EventStore
from forgeline.store.dialect import Dialect
from forgeline.store.migrations import Migration, check
from forgeline.store.projections import FINAL_STATUSES_SQL
from forgeline.store.recorder import Conflict, Constraint, Recorder, Rejected, Statement
from forgeline.store.rows import EVENT_COLUMNS, INSERT_COLUMNS, Row

Connection = psycopg.AsyncConnection[TupleRow]

CHANNEL = "forgeline_events"
"""What a commit notifies, with its last position as the payload."""

# pg_advisory_xact_lock key ("forgelin" in ASCII): serializes every write transaction
# (batches, rebuilds, migrations) of every process on the database.
_APPEND_LOCK = 0x666F7267656C696E

_CONSTRAINTS: dict[str, Constraint] = {
    "events_id_key": "event_id",
    "events_once_per_cause": "once_per_cause",
    "events_stream_version": "stream_version",
}

_TASK_COLUMNS = "id, status, current_phase, request, created_at, updated_at"
_AGENT_COLUMNS = "position, task_id, actor, event_type, created_at"

POSTGRES = Dialect(
    select_stream=f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s"
    " ORDER BY version",
    select_all=f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s",
    select_version="SELECT MAX(version) FROM events WHERE stream_id = %s",
    select_checkpoint="SELECT position FROM checkpoints WHERE subscriber = %s",
    select_tasks=f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY created_at, id",
    select_task=f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %s",
    select_agent_events=f"SELECT {_AGENT_COLUMNS} FROM agent_events ORDER BY position",
    select_task_agent_events=f"SELECT {_AGENT_COLUMNS} FROM agent_events WHERE task_id = %s"
    " ORDER BY position",
    stream_versions="SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY(%s)"
    " GROUP BY stream_id",
    insert_event=f"INSERT INTO events ({INSERT_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING position",
    set_checkpoints="INSERT INTO checkpoints (subscriber, position)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[])"
    " ON CONFLICT (subscriber) DO UPDATE"
    " SET position = GREATEST(checkpoints.position, EXCLUDED.position)",
    read_models={
        "insert_tasks": f"INSERT INTO tasks ({_TASK_COLUMNS})"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::timestamptz[], %s::timestamptz[])"
        " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
        " current_phase = EXCLUDED.current_phase, request = EXCLUDED.request,"
        " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        "move_tasks": "UPDATE tasks SET status = u.status, current_phase = u.phase,"
        " updated_at = u.at"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
        " AS u(id, status, phase, at)"
        f" WHERE tasks.id = u.id AND tasks.status NOT IN {FINAL_STATUSES_SQL}",
        "insert_agent_events": f"INSERT INTO agent_events ({_AGENT_COLUMNS})"
        " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],"
        " %s::timestamptz[])"
        " ON CONFLICT (position) DO UPDATE SET task_id = EXCLUDED.task_id,"
        " actor = EXCLUDED.actor, event_type = EXCLUDED.event_type,"
        " created_at = EXCLUDED.created_at",
    },
    forgeline_tables="SELECT relname FROM pg_class WHERE relname IN ('events', 'schema_version')"
    " AND relkind IN ('r', 'p') AND pg_table_is_visible(oid)",
    schema_version="SELECT MAX(version) FROM schema_version",
    record_version="INSERT INTO schema_version (version, summary, applied_at) VALUES (%s, %s, %s)",
)

# ``data`` is the payload's JSON as TEXT, not JSONB: JSONB rejects ``\u0000``, which test
# output and process logs may well contain, and the store never queries inside payloads.
MIGRATIONS: Sequence[Migration] = check(
    (
        Migration(
            1,
            "events, checkpoints, the tasks and agent_events read models, schema versions",
            (
                """
                CREATE TABLE IF NOT EXISTS events (
                    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    stream_id TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    data TEXT NOT NULL,
                    correlation_id TEXT NOT NULL,
                    causation_id TEXT,
                    actor TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
                )
                """,
                "CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause"
                " ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL",
                """
                CREATE TABLE IF NOT EXISTS checkpoints (
                    subscriber TEXT PRIMARY KEY,
                    position BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE IF NOT EXISTS tasks (
                    id TEXT PRIMARY KEY,
                    status TEXT NOT NULL,
                    current_phase TEXT NOT NULL,
                    request TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL
                )
                """,
                """
                CREATE TABLE IF NOT EXISTS agent_events (
                    position BIGINT PRIMARY KEY,
                    task_id TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL
                )
                """,
                "CREATE INDEX IF NOT EXISTS agent_events_task ON agent_events (task_id, position)",
                """
                CREATE TABLE IF NOT EXISTS schema_version (
                    version INTEGER PRIMARY KEY,
                    summary TEXT NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL
                )
                """,
            ),
        ),
    )
)


def _secrets(url: str) -> list[str]:
    """The password(s) a connection URL carries, in the forms they may appear in."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for key, value in parse_qsl(parts.query):
            if key.lower() == "password" and value:
                found.append(value)
        password = conninfo_to_dict(url).get("password")
        if isinstance(password, str):
            found.append(password)
    except (ValueError, psycopg.Error):
        pass
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` without its password (in the user info or a ``password=`` parameter)."""
    if "://" not in url:  # a ``key=value`` conninfo string
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            return "<unparseable postgres conninfo>"
        return " ".join(f"{k}={v}" for k, v in params.items() if k not in ("password", "passfile"))
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hostinfo}" if user else hostinfo
        query = "&".join(
            p
            for p in parts.query.split("&")
            if p and p.split("=", 1)[0].lower() not in ("password", "passfile")
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparseable postgres URL>"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class PostgresRecorder(Recorder):
    dialect = POSTGRES
    driver_error = psycopg.Error

    def __init__(
        self,
        connection: Callable[[], Awaitable[Connection]],
        error: Callable[[str, BaseException], StoreError],
    ) -> None:
        super().__init__()
        self._connection = connection
        self._error = error
        self._conn: Connection | None = None
        """The connection of the transaction in progress."""

    def translate(self, action: str, exc: Exception) -> StoreError:
        return self._error(action, exc)

    async def _begin(self) -> None:
        self._conn = conn = await self._connection()
        await conn.execute("BEGIN")
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))

    async def _commit(self) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        await conn.execute("COMMIT")

    async def _rollback(self) -> None:
        conn, self._conn = self._conn, None
        if (
            conn is not None
            and not conn.broken
            and not conn.closed
            and conn.info.transaction_status != pq.TransactionStatus.IDLE
        ):
            await conn.execute("ROLLBACK")

    async def _current(self) -> Connection:
        """The transaction's connection, or (outside one) the write connection."""
        return self._conn if self._conn is not None else await self._connection()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        cursor = await (await self._current()).execute(sql, params)
        return await cursor.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await (await self._current()).execute(sql, params)

    async def insert(self, rows: Sequence[Row]) -> list[int]:
        # One statement per event, sent together: positions follow the rows' order.
        cursor = (await self._current()).cursor()
        positions: list[int] = []
        try:
            await cursor.executemany(self.dialect.insert_event, rows, returning=True)
            while True:
                inserted = await cursor.fetchone()
                assert inserted is not None
                positions.append(inserted[0])
                if not cursor.nextset():
                    return positions
        except pg_errors.UniqueViolation as exc:
            constraint = _CONSTRAINTS.get(exc.diag.constraint_name or "")
            raise (Conflict(constraint) if constraint else Rejected(_one_line(exc))) from exc
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            raise Rejected(_one_line(exc)) from exc

    async def run(self, statements: Sequence[Statement], last_position: int | None) -> None:
        conn = await self._current()
        try:
            async with conn.pipeline():
                for sql, rows in statements:
                    await conn.execute(sql, [list(column) for column in zip(*rows, strict=True)])
                if last_position is not None:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(last_position)))
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            raise Rejected(_one_line(exc)) from exc


class PostgresEventStore(EventStore):
    dialect = POSTGRES
    migrations = MIGRATIONS
    poll_interval = 1.0
    """A safety net only: commits of every process are pushed (LISTEN/NOTIFY)."""
    connect_timeout = 10
    """Seconds to wait for the server at open, unless the URL sets ``connect_timeout``."""
    read_connections = 4
    """Reads run side by side on this many connections (a connection answers one query
    at a time)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__(create=create)
        self.url = url
        self._safe_url = redact_url(url)
        self._secrets = _secrets(url)
        self._wconn: Connection | None = None
        self._rconns: list[Connection | None] = []
        self._next_reader = 0
        self._reconnect_lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresEventStore({self._safe_url!r})"

    @property
    def location(self) -> str:
        return self._safe_url

    # ------------------------------------------------------------------ plumbing

    def _error(self, action: str, exc: BaseException) -> StoreError:
        message = _one_line(exc)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return StoreError(f"{action} the event store at {self._safe_url}: {message}")

    async def _connect(self) -> Connection:
        try:
            params = conninfo_to_dict(self.url)
            extra: dict[str, Any] = {}
            if "connect_timeout" not in params:
                extra["connect_timeout"] = self.connect_timeout
            if "application_name" not in params:
                extra["application_name"] = "forgeline"
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise self._error("cannot connect to", exc) from exc
        try:
            # Naive datetimes mean UTC, as everywhere else in forgeline.
            await conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            await conn.close()
            raise self._error("cannot set up a connection to", exc) from exc
        return conn

    async def _open(self) -> Recorder:
        self._wconn = await self._connect()
        self._rconns = [None] * self.read_connections
        for i in range(self.read_connections):
            self._rconns[i] = await self._connect()
        listening = await self._listen()
        self._listener = asyncio.get_running_loop().create_task(
            self._follow_notifications(listening), name="forgeline-postgres-listener"
        )
        return PostgresRecorder(lambda: self._live(-1), self._error)

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for conn in (self._wconn, *self._rconns):
            if conn is not None:
                await conn.close()
        self._wconn = None
        self._rconns = []

    def _slot(self, which: int) -> Connection | None:
        return self._wconn if which < 0 else self._rconns[which]

    async def _live(self, which: int) -> Connection:
        """The write connection (``-1``) or read connection ``which``, replaced by a new
        one if the old one broke."""
        if self._wconn is None:
            raise StoreError(f"the event store at {self._safe_url} is not open")
        conn = self._slot(which)
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        async with self._reconnect_lock:
            current = self._slot(which)
            if current is not None and not current.broken and not current.closed:
                return current
            fresh = await self._connect()
            if which < 0:
                self._wconn = fresh
            else:
                self._rconns[which] = fresh
            if current is not None:
                await current.close()
            return fresh

    def _reader(self) -> int:
        """A read connection: an idle one if there is, else the next in turn."""
        for i, conn in enumerate(self._rconns):
            if conn is not None and not conn.lock.locked():
                return i
        self._next_reader = (self._next_reader + 1) % max(len(self._rconns), 1)
        return self._next_reader

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        # A read is safe to repeat: one retry on a fresh connection if the old one broke
        # (a server restart), so subscribers ride over it.
        for retry in (True, False):
            conn = await self._live(self._reader())
            try:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall()
            except psycopg.Error as exc:
                if not (retry and conn.broken):
                    raise self._error("cannot read from", exc) from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------- notifications

    async def _listen(self) -> Connection:
        """A connection that listens for commits (before ``open`` returns, so no commit
        after it goes unnoticed)."""
        conn = await self._connect()
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            await conn.close()
            raise self._error("cannot listen for commits in", exc) from exc
        return conn

    async def _follow_notifications(self, conn: Connection | None) -> None:
        """Wake subscribers for every commit of another process; should the connection
        break, listen again (subscribers poll meanwhile) and wake them once, for what
        may have been missed."""
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._listen()
                        await self._announce()
                    async for note in conn.notifies():
                        writer = self._wconn
                        if writer is None or note.pid != writer.info.backend_pid:
                            await self._announce()  # our own commits announce themselves
                except (psycopg.Error, StoreError):
                    pass
                if conn is not None:
                    await conn.close()
                    conn = None
                await asyncio.sleep(self.poll_interval)
        finally:
            if conn is not None:
                await conn.close()
