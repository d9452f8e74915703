"""The scaled event store: Postgres through psycopg 3 (async), durable commits.

One connection writes (the group committer hands it one batch at a time); reads share a
few connections (``read_connections``). Every batch transaction first takes a
transaction-level advisory lock, so batches from any number of processes assign positions
one after another and commit in that order: a subscriber reading ``position > N`` never
misses an event that commits later with a lower position. Schema, semantics and error
translation mirror ``sqlite.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from forgeline.core.events import Event, NewEvent, dump_data
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
from forgeline.store.projections import FINAL_STATUSES_SQL, task_rows, task_update

Connection = psycopg.AsyncConnection[TupleRow]

# ``data`` is the payload's JSON as TEXT, not JSONB: JSONB rejects ``\u0000``, which test
# output and process logs may well contain, and the store never queries inside payloads.
SCHEMA: tuple[str, ...] = (
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
    """
    CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause
        ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL
    """,
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
)

_ONCE_PER_CAUSE = "events_once_per_cause"
_STREAM_VERSION = "events_stream_version"
_EVENT_ID = "events_id_key"

# pg_advisory_xact_lock keys ("forgelin" and "forgesch" in ASCII): one serializes every
# append batch in the database, the other schema creation by processes opening at once.
_APPEND_LOCK = 0x666F7267656C696E
_SCHEMA_LOCK = 0x666F726765736368

_REBUILD_CHUNK = 1000


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


class PostgresEventStore(EventStore):
    connect_timeout = 10
    """Seconds to wait for the server at open, unless the URL sets ``connect_timeout``."""
    read_connections = 4
    """Reads run side by side on this many connections (a connection answers one query
    at a time)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._safe_url = redact_url(url)
        self._secrets = _secrets(url)
        self._wconn: Connection | None = None
        self._rconns: list[Connection | None] = []
        self._next_reader = 0
        self._wlock = asyncio.Lock()
        self._reconnect_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self._safe_url!r})"

    # ------------------------------------------------------------------ plumbing

    def _error(self, action: str, exc: BaseException) -> StoreError:
        message = " ".join(str(exc).split()) or type(exc).__name__
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

    async def _open(self) -> None:
        if self._wconn is not None:
            return
        writer = await self._connect()
        try:
            async with writer.transaction():
                await writer.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    await writer.execute(statement)
            readers: list[Connection | None] = []
            for _ in range(self.read_connections):
                readers.append(await self._connect())
        except psycopg.Error as exc:
            for conn in (writer, *readers):
                if conn is not None:
                    await conn.close()
            raise self._error("cannot create the schema in", exc) from exc
        except BaseException:
            for conn in (writer, *readers):
                if conn is not None:
                    await conn.close()
            raise
        self._wconn, self._rconns = writer, readers

    async def _close(self) -> None:
        async with self._wlock:
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
            raise StoreError("the event store is not open")
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

    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[TupleRow]:
        # A read is safe to repeat: one retry on a fresh connection if the old one broke
        # (a server restart), so subscribers ride over it.
        for retry in (True, False):
            conn = await self._live(self._reader())
            try:
                cursor = await conn.execute(query, params)
                return await cursor.fetchall()
            except psycopg.Error as exc:
                if not (retry and conn.broken):
                    raise self._error("cannot read from", exc) from exc
        raise AssertionError("unreachable")

    # -------------------------------------------------------------------- writes

    async def _commit_batch(self, groups: list[Group]) -> BatchResult:
        async with self._wlock:
            conn = await self._live(-1)
            try:
                return await self._write(conn, groups)
            except psycopg.Error as exc:
                raise self._error("cannot append to", exc) from exc

    async def _write(self, conn: Connection, groups: list[Group]) -> BatchResult:
        # Most batches hold no conflict: write them whole in three round trips (the
        # streams' versions, every insert pipelined, every read-model statement
        # pipelined), without a savepoint per group. Should any group fail, that
        # transaction is rolled back whole and the batch written again the careful way,
        # where each failure is its own group's.
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
                return await self._write_fast(conn, groups)
        except (StoreError, psycopg.IntegrityError, psycopg.DataError):
            pass
        results: BatchResult = []
        async with conn.transaction():
            # Serializes position assignment with every other writer of this database.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
            for group in groups:
                try:
                    async with conn.transaction():  # SAVEPOINT: a failure undoes only this
                        results.append([await self._write_one(conn, r) for r in group])
                except (StoreError, psycopg.IntegrityError, psycopg.DataError) as exc:
                    results.append(
                        exc if isinstance(exc, StoreError) else self._error("cannot append to", exc)
                    )
        return results

    async def _write_fast(self, conn: Connection, groups: list[Group]) -> BatchResult:
        """Every group of the batch, or a ``StoreError``/``psycopg`` error for the first
        one that fails (the caller rolls back and writes the careful way)."""
        requests = [r for group in groups for r in group]
        streams = sorted(
            {r.stream_id for r in requests if r.events or r.expected_version is not None}
        )
        versions: dict[str, int] = {}
        if streams:
            cursor = await conn.execute(
                "SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY(%s)"
                " GROUP BY stream_id",
                (streams,),
            )
            versions = {stream: version for stream, version in await cursor.fetchall()}
        rows: list[tuple[Any, ...]] = []
        firsts: list[int] = []
        for request in requests:
            version = versions.get(request.stream_id, 0)
            if request.expected_version is not None and request.expected_version != version:
                raise ConcurrencyError(request.stream_id, request.expected_version, version)
            firsts.append(version + 1)
            for event in request.events:
                version += 1
                rows.append(_event_row(event, version))
            if request.events:
                versions[request.stream_id] = version
        positions: list[int] = []
        if rows:
            # One statement per event, sent together: positions follow the rows' order.
            cursor = conn.cursor()
            await cursor.executemany(_INSERT_EVENT, rows, returning=True)
            while True:
                inserted = await cursor.fetchone()
                assert inserted is not None
                positions.append(inserted[0])
                if not cursor.nextset():
                    break
        recorded: list[list[Event]] = []
        at = 0
        for request, first in zip(requests, firsts, strict=True):
            recorded.append(
                [
                    recorded_event(event, first + i, positions[at + i])
                    for i, event in enumerate(request.events)
                ]
            )
            at += len(request.events)
        # The read models and checkpoints: one statement each for the whole batch.
        change = task_rows([event for events in recorded for event in events])
        checkpoints: dict[str, int] = {}
        for request in requests:
            if request.checkpoint is not None:
                name, position = request.checkpoint
                checkpoints[name] = max(position, checkpoints.get(name, position))
        async with conn.pipeline():
            if change.inserted:
                await conn.execute(_INSERT_TASKS, _columns(change.inserted, 6))
            if change.moved:
                await conn.execute(_MOVE_TASKS, _columns(change.moved, 4))
            if change.agent_events:
                await conn.execute(_INSERT_AGENT_EVENTS, _columns(change.agent_events, 5))
            if checkpoints:
                await conn.execute(
                    _SET_CHECKPOINTS, (list(checkpoints), list(checkpoints.values()))
                )
        results: BatchResult = []
        at = 0
        for group in groups:
            results.append(recorded[at : at + len(group)])
            at += len(group)
        return results

    async def _write_one(self, conn: Connection, request: AppendRequest) -> list[Event]:
        if not request.events and request.expected_version is None:
            if request.checkpoint is not None:
                await self._set_checkpoint(conn, *request.checkpoint)
            return []
        cursor = await conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = %s",
            (request.stream_id,),
        )
        row = await cursor.fetchone()
        assert row is not None
        version: int = row[0]
        if request.expected_version is not None and request.expected_version != version:
            raise ConcurrencyError(request.stream_id, request.expected_version, version)
        recorded: list[Event] = []
        for event in request.events:
            version += 1
            try:
                cursor = await conn.execute(
                    _INSERT_EVENT,
                    _event_row(event, version),
                )
            except pg_errors.UniqueViolation as exc:
                constraint = exc.diag.constraint_name
                if constraint in (_ONCE_PER_CAUSE, _EVENT_ID):
                    raise DuplicateEventError(
                        event.stream_id, event.causation_id, event.type
                    ) from exc
                if constraint == _STREAM_VERSION:
                    raise ConcurrencyError(request.stream_id, version - 1, version) from exc
                raise StoreError(f"cannot append event {event.id}: {exc}") from exc
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                raise StoreError(f"cannot append event {event.id}: {exc}") from exc
            inserted = await cursor.fetchone()
            assert inserted is not None
            recorded.append(recorded_event(event, version, inserted[0]))
        for event in recorded:
            await self._project(conn, event)
        if request.checkpoint is not None:
            await self._set_checkpoint(conn, *request.checkpoint)
        return recorded

    @staticmethod
    async def _project(conn: Connection, event: Event) -> None:
        update = task_update(event)
        if update is None:
            return
        at = event.created_at
        if update.request is not None:
            await conn.execute(
                "INSERT INTO tasks (id, status, current_phase, request, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " status = EXCLUDED.status, current_phase = EXCLUDED.current_phase,"
                " request = EXCLUDED.request, created_at = EXCLUDED.created_at,"
                " updated_at = EXCLUDED.updated_at",
                (update.task_id, update.status, update.phase, update.request, at, at),
            )
        elif update.status is not None:
            await conn.execute(
                "UPDATE tasks SET status = %s, current_phase = %s, updated_at = %s"
                f" WHERE id = %s AND status NOT IN {FINAL_STATUSES_SQL}",
                (update.status, update.phase, at, update.task_id),
            )
        await conn.execute(
            "INSERT INTO agent_events (position, task_id, actor, event_type, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (position) DO UPDATE SET"
            " task_id = EXCLUDED.task_id, actor = EXCLUDED.actor,"
            " event_type = EXCLUDED.event_type, created_at = EXCLUDED.created_at",
            (event.position, update.task_id, event.actor, event.type, at),
        )

    @staticmethod
    async def _set_checkpoint(conn: Connection, subscriber: str, position: int) -> None:
        await conn.execute(
            "INSERT INTO checkpoints (subscriber, position) VALUES (%s, %s)"
            " ON CONFLICT (subscriber) DO UPDATE"
            " SET position = GREATEST(checkpoints.position, EXCLUDED.position)",
            (subscriber, position),
        )

    async def rebuild_projections(self) -> None:
        async with self._wlock:
            conn = await self._live(-1)
            try:
                async with conn.transaction():
                    # Hold off appends from every process while the read models are rebuilt.
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
                    await conn.execute("DELETE FROM tasks")
                    await conn.execute("DELETE FROM agent_events")
                    after = 0
                    while True:
                        cursor = await conn.execute(
                            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s"
                            " ORDER BY position LIMIT %s",
                            (after, _REBUILD_CHUNK),
                        )
                        events = [event_from_row(r) for r in await cursor.fetchall()]
                        if not events:
                            break
                        async with conn.pipeline():
                            for event in events:
                                await self._project(conn, event)
                        after = events[-1].position
            except psycopg.Error as exc:
                raise self._error("cannot rebuild the read models in", exc) from exc

    # --------------------------------------------------------------------- reads

    async def _read_stream(self, stream_id: str, after_version: int) -> list[Event]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events"
            " WHERE stream_id = %s AND version > %s ORDER BY version",
            (stream_id, after_version),
        )
        return [self._from_row(r) for r in rows]

    async def _read_all(self, after: int, limit: int) -> list[Event]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s",
            (after, limit),
        )
        return [self._from_row(r) for r in rows]

    async def _get_checkpoint(self, subscriber: str) -> int:
        rows = await self._fetch(
            "SELECT position FROM checkpoints WHERE subscriber = %s", (subscriber,)
        )
        return int(rows[0][0]) if rows else 0

    async def tasks(self) -> list[TaskRow]:
        rows = await self._fetch(f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY created_at, id")
        return [_task_row(r) for r in rows]

    async def task(self, task_id: str) -> TaskRow | None:
        rows = await self._fetch(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,))
        return _task_row(rows[0]) if rows else None

    async def agent_events(self, task_id: str | None = None) -> list[AgentEventRow]:
        columns = "position, task_id, actor, event_type, created_at"
        if task_id is None:
            rows = await self._fetch(f"SELECT {columns} FROM agent_events ORDER BY position")
        else:
            rows = await self._fetch(
                f"SELECT {columns} FROM agent_events WHERE task_id = %s ORDER BY position",
                (task_id,),
            )
        return [AgentEventRow(p, t, a, e, c) for p, t, a, e, c in rows]


_TASK_COLUMNS = "id, status, current_phase, request, created_at, updated_at"
_INSERT_TASKS = (
    f"INSERT INTO tasks ({_TASK_COLUMNS})"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::timestamptz[], %s::timestamptz[])"
    " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
    " current_phase = EXCLUDED.current_phase, request = EXCLUDED.request,"
    " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
)
_MOVE_TASKS = (
    "UPDATE tasks SET status = u.status, current_phase = u.phase, updated_at = u.at"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
    " AS u(id, status, phase, at)"
    f" WHERE tasks.id = u.id AND tasks.status NOT IN {FINAL_STATUSES_SQL}"
)
_INSERT_AGENT_EVENTS = (
    "INSERT INTO agent_events (position, task_id, actor, event_type, created_at)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],"
    " %s::timestamptz[])"
    " ON CONFLICT (position) DO UPDATE SET task_id = EXCLUDED.task_id,"
    " actor = EXCLUDED.actor, event_type = EXCLUDED.event_type,"
    " created_at = EXCLUDED.created_at"
)
_SET_CHECKPOINTS = (
    "INSERT INTO checkpoints (subscriber, position)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[])"
    " ON CONFLICT (subscriber) DO UPDATE"
    " SET position = GREATEST(checkpoints.position, EXCLUDED.position)"
)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (``unnest``'s parameters)."""
    return [[row[i] for row in rows] for i in range(width)]


def _event_row(event: NewEvent, version: int) -> tuple[Any, ...]:
    """The ``events`` columns of ``_INSERT_EVENT`` (and the batch insert) for ``event``."""
    return (
        event.id,
        event.stream_id,
        version,
        event.type,
        dump_data(event.data),
        event.correlation_id,
        event.causation_id,
        event.actor,
        event.created_at,
    )


_INSERT_EVENT = (
    "INSERT INTO events (id, stream_id, version, type, data, correlation_id, causation_id,"
    " actor, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING position"
)


def _task_row(row: TupleRow) -> TaskRow:
    id_, status, phase, request, created, updated = row
    created_at: datetime = created
    updated_at: datetime = updated
    return TaskRow(id_, status, phase, request, created_at, updated_at)
