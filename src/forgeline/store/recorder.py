"""The one write path of every backend: versioned inserts, read models and checkpoints of
a batch in one transaction, the schema's migrations, and the driver's errors translated
into forgeline's once.

A backend's recorder (``SQLiteRecorder``, ``PostgresRecorder``) supplies the beginning
and end of a transaction, a query, the insert of event rows and the bulk statements, in
its driver's terms, and a ``Dialect`` with its SQL; what the store does with them is
written here once.

A batch (the group committer's groups, each of which commits whole or not at all) is first
written whole, optimistically: one query for the versions of every stream in it, the
inserts, one bulk statement per read model and for the checkpoints. Should any group fail
(a stale expected version, a duplicate, a refused value), that transaction is rolled back
and the batch written again group by group, each in a savepoint and each event inserted on
its own, so the failure is that group's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from forgeline.core.events import Event, NewEvent, utcnow
from forgeline.errors import ConcurrencyError, DuplicateEventError, StoreError
from forgeline.store.dialect import Dialect
from forgeline.store.migrations import Migration, missing_store, pending
from forgeline.store.projections import READ_MODELS
from forgeline.store.rows import Row, event_from_row, event_row, recorded_event

if TYPE_CHECKING:
    from forgeline.store.base import BatchResult, Group

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[Row]]
"""A bulk statement and its rows."""

Constraint = Literal["event_id", "once_per_cause", "stream_version"]
"""The unique constraints of ``events``: an event id is recorded once, a cause has one
effect of each type per stream, a stream's versions are dense."""

REBUILD_CHUNK = 1000


class Conflict(Exception):
    """An insert hit a unique constraint of ``events`` (backends say which)."""

    def __init__(self, constraint: Constraint) -> None:
        super().__init__(constraint)
        self.constraint = constraint


class Rejected(Exception):
    """The database refused a value of a row (a backend's data or integrity error)."""


class Recorder(ABC):
    """Writes batches of append requests through one backend connection."""

    dialect: ClassVar[Dialect]
    driver_error: ClassVar[type[Exception]]
    """The root of the driver's errors; ``translate`` turns them into ``StoreError``s."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        """Held while the connection is in a transaction."""

    # --------------------------------------------------------------- primitives

    @abstractmethod
    async def _begin(self) -> None:
        """Begin a transaction that holds the database's append lock."""

    @abstractmethod
    async def _commit(self) -> None:
        """Commit it, durably."""

    @abstractmethod
    async def _rollback(self) -> None:
        """Roll it back, if one is open (beginning or committing may have failed)."""

    @abstractmethod
    async def query(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    async def insert(self, rows: Sequence[Row]) -> list[int]:
        """Insert event rows (``rows.INSERT_COLUMNS``), returning their positions in
        order. Raises ``Conflict`` for a unique constraint and ``Rejected`` for a refused
        value."""

    @abstractmethod
    async def run(self, statements: Sequence[Statement], last_position: int | None) -> None:
        """Run bulk statements (``Rejected`` for a refused value). With ``last_position``
        the transaction recorded events up to it: tell other processes at commit, if the
        backend can."""

    @abstractmethod
    def translate(self, action: str, exc: Exception) -> StoreError:
        """A driver error as a ``StoreError`` that names the store and what to do."""

    # ---------------------------------------------------------------- transactions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._lock:
            try:
                await self._begin()
                yield
                await self._commit()
            except BaseException:
                with contextlib.suppress(self.driver_error):  # the first error tells more
                    await asyncio.shield(self._rollback())
                raise

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: an error inside undoes only what it wrote."""
        await self.execute("SAVEPOINT g")
        try:
            yield
        except BaseException:
            await self.execute("ROLLBACK TO SAVEPOINT g")
            await self.execute("RELEASE SAVEPOINT g")
            raise
        await self.execute("RELEASE SAVEPOINT g")

    # ---------------------------------------------------------------------- writes

    async def commit(self, groups: Sequence[Group]) -> BatchResult:
        """Write every group in one durable transaction; a failing group fails alone."""
        try:
            return await self._record(groups)
        except self.driver_error as exc:
            raise self.translate("cannot append to", exc) from exc

    async def _record(self, groups: Sequence[Group]) -> BatchResult:
        try:
            async with self.transaction():
                return list(await self._write(groups, whole=True))
        except (ConcurrencyError, Conflict, Rejected):
            pass  # some group fails: write them one by one, so it fails alone
        results: BatchResult = []
        async with self.transaction():
            for group in groups:
                try:
                    async with self.savepoint():
                        [recorded] = await self._write([group], whole=False)
                    results.append(recorded)
                except (ConcurrencyError, DuplicateEventError) as exc:
                    results.append(exc)
                except Rejected as exc:
                    results.append(StoreError(f"cannot append: the database refused {exc}"))
        return results

    async def _write(self, groups: Sequence[Group], *, whole: bool) -> list[list[list[Event]]]:
        requests = [request for group in groups for request in group]
        streams = sorted(
            {r.stream_id for r in requests if r.events or r.expected_version is not None}
        )
        versions: dict[str, int] = {}
        if streams:
            rows = await self.query(self.dialect.stream_versions, (streams,))
            versions = {stream: version for stream, version in rows}
        firsts: list[int] = []
        events: list[tuple[NewEvent, int]] = []
        for request in requests:
            version = versions.get(request.stream_id, 0)
            if request.expected_version is not None and request.expected_version != version:
                raise ConcurrencyError(request.stream_id, request.expected_version, version)
            firsts.append(version + 1)
            for event in request.events:
                version += 1
                events.append((event, version))
            if request.events:
                versions[request.stream_id] = version
        positions = await self._insert(events, whole=whole)
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
        checkpoints: dict[str, int] = {}
        for request in requests:
            if request.checkpoint is not None:
                name, position = request.checkpoint
                checkpoints[name] = max(position, checkpoints.get(name, position))
        statements = self._read_models([e for r in recorded for e in r])
        if checkpoints:
            statements.append((self.dialect.set_checkpoints, list(checkpoints.items())))
        await self.run(statements, positions[-1] if positions else None)
        results: list[list[list[Event]]] = []
        at = 0
        for group in groups:
            results.append(recorded[at : at + len(group)])
            at += len(group)
        return results

    async def _insert(self, events: Sequence[tuple[NewEvent, int]], *, whole: bool) -> list[int]:
        rows = [event_row(event, version) for event, version in events]
        if whole:
            return await self.insert(rows) if rows else []
        positions: list[int] = []
        for (event, version), row in zip(events, rows, strict=True):
            try:
                positions += await self.insert([row])
            except Conflict as exc:
                if exc.constraint == "stream_version":
                    raise ConcurrencyError(event.stream_id, version - 1, version) from exc
                raise DuplicateEventError(event.stream_id, event.causation_id, event.type) from exc
            except Rejected as exc:
                raise Rejected(f"event {event.id} of {event.stream_id!r}: {exc}") from exc
        return positions

    def _read_models(self, events: Sequence[Event]) -> list[Statement]:
        statements: list[Statement] = []
        if not events:
            return statements
        for model in READ_MODELS:
            for name, rows in model.writes(events).items():
                if rows:
                    statements.append((self.dialect.read_models[name], rows))
        return statements

    # --------------------------------------------------------------------- rebuild

    async def rebuild(self) -> None:
        """Empty every read model and replay the log through it, in one transaction."""
        try:
            await self._rebuild()
        except self.driver_error as exc:
            raise self.translate("cannot rebuild the read models of", exc) from exc

    async def _rebuild(self) -> None:
        async with self.transaction():
            for model in READ_MODELS:
                for table in model.tables:
                    await self.execute(f"DELETE FROM {table}")
            after = 0
            while True:
                rows = await self.query(self.dialect.select_all, (after, REBUILD_CHUNK))
                if not rows:
                    return
                await self.run(self._read_models(readable(rows)), None)
                after = rows[-1][0]

    # ------------------------------------------------------------------ migrations

    async def migrate(self, migrations: Sequence[Migration], *, create: bool, where: str) -> None:
        """Bring the schema up to date (creating it when ``create``), or refuse."""
        try:
            await self._migrate(migrations, create, where)
        except self.driver_error as exc:
            raise self.translate("cannot open", exc) from exc

    async def _migrate(self, migrations: Sequence[Migration], create: bool, where: str) -> None:
        found = await self._version()
        if found is None and not create:
            raise missing_store(where)
        if not pending(found or 0, migrations, where):
            return
        async with self.transaction():  # again under the lock: another process may be first
            for migration in pending(await self._version() or 0, migrations, where):
                for statement in migration.statements:
                    await self.execute(statement)
                await self.execute(
                    self.dialect.record_version,
                    (migration.version, migration.summary, utcnow()),
                )

    async def _version(self) -> int | None:
        """The schema version found, 0 for a store from before versions, None for none."""
        tables = {name for (name,) in await self.query(self.dialect.forgeline_tables)}
        if "schema_version" in tables:
            [(version,)] = await self.query(self.dialect.schema_version)
            return int(version or 0)
        return 0 if "events" in tables else None


def readable(rows: Sequence[Row]) -> list[Event]:
    """The events of ``rows`` that can be read; each unreadable one is logged and left out
    (``event_from_row`` names it)."""
    events: list[Event] = []
    for row in rows:
        try:
            events.append(event_from_row(row))
        except StoreError as exc:
            log.warning("%s", exc)
    return events
