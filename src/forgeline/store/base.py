"""The event store contract, shared by every backend.

Appends go through a group committer: requests that arrive while a commit is in flight are
written together in the next transaction, so concurrent tasks share one durable commit.
Each group of requests in a batch commits whole or not at all, so one stale expected
version or duplicate does not fail its neighbours (``recorder.Recorder`` writes them).

A backend supplies its connections, a ``Recorder`` (the write path over its write
connection), a ``Dialect`` (its SQL) and ``_fetch`` (one read); everything else lives here
once: the reads and read models, subscriptions, and the in-memory copies of recorded
events that spare repeated reads their parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from forgeline.core.events import Event, NewEvent
from forgeline.errors import StoreError
from forgeline.redaction import redact_event
from forgeline.store.dialect import Dialect
from forgeline.store.migrations import Migration
from forgeline.store.recorder import Recorder
from forgeline.store.rows import Row, event_from_row, recorded_event

__all__ = [
    "AgentEventRow",
    "AppendRequest",
    "BatchResult",
    "EventStore",
    "Group",
    "TaskRow",
    "recorded_event",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppendRequest:
    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int | None = None
    """``None`` appends whatever the stream's version; ``0`` requires a new stream."""
    checkpoint: tuple[str, int] | None = None
    """A subscriber's position, saved in the same transaction as the events."""


@dataclass(frozen=True)
class TaskRow:
    """The ``tasks`` read model."""

    id: str
    status: str
    current_phase: str
    request: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AgentEventRow:
    """The ``agent_events`` read model."""

    position: int
    task_id: str
    actor: str
    event_type: str
    created_at: datetime


Group = tuple[AppendRequest, ...]
"""Requests that commit together or not at all."""


@dataclass
class _Pending:
    group: Group
    future: asyncio.Future[list[list[Event]]] = field(repr=False)


BatchResult = list[list[list[Event]] | BaseException]
"""Per group: the recorded events of each request, or the error that rejected the group."""


class EventStore(ABC):
    """Append-only event log with optimistic concurrency, idempotency and subscriptions."""

    dialect: ClassVar[Dialect]
    migrations: ClassVar[Sequence[Migration]]
    """The schema this code reads and writes, as numbered migrations (``migrations.py``)."""
    max_batch = 512
    poll_interval = 0.25
    """How often a subscriber looks for events written by other processes that it was not
    told of (Postgres tells, so there it is only a safety net)."""
    cached_streams = 32768
    """How many streams' events are kept in memory (least recently used go first)."""
    cached_positions = 65536
    """How many recent events are kept by position, so a page of the log read back is not
    parsed again."""

    def __init__(self, *, create: bool = True) -> None:
        self.create = create
        """Create the store if there is none; else ``open`` refuses with a clear error."""
        self._recorder: Recorder | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._committer: asyncio.Task[None] | None = None
        self._appended: asyncio.Condition | None = None
        self._closed = False
        self._commits = 0
        self._unreadable: set[int] = set()
        # Recorded events never change, so what was written or read once is kept: a
        # stream's events 1..n (a read asks the database only for versions after n) and
        # recent events by position (rows read back reuse them instead of parsing).
        self._streams: OrderedDict[str, list[Event]] = OrderedDict()
        self._positions: OrderedDict[int, Event] = OrderedDict()

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, as error messages name it (no password)."""

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect, and create or upgrade the schema (``create=False``: refuse when there
        is no store). Idempotent."""
        if self._recorder is not None:
            return
        try:
            recorder = await self._open()
            await recorder.migrate(self.migrations, create=self.create, where=self.location)
        except BaseException:
            await self._close()
            raise
        self._recorder = recorder

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        self._closed = True
        self._recorder = None
        await self._close()

    async def __aenter__(self) -> EventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _write_path(self) -> Recorder:
        if self._recorder is None:
            raise StoreError(f"the event store at {self.location} is not open")
        return self._recorder

    # -------------------------------------------------------------------- writes

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        checkpoint: tuple[str, int] | None = None,
    ) -> list[Event]:
        """Append ``events`` to one stream atomically and return them as recorded.

        Raises ``ConcurrencyError`` when ``expected_version`` is stale and
        ``DuplicateEventError`` when an event with the same (stream, causation, type)
        already exists; in both cases nothing of this request is written.
        """
        request = AppendRequest(stream_id, tuple(events), expected_version, checkpoint)
        [recorded] = await self.append_batch([request])
        return recorded

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[list[Event]]:
        """Append to several streams atomically: every request is written, or none."""
        for request in requests:
            for event in request.events:
                if event.stream_id != request.stream_id:
                    raise StoreError(
                        f"event {event.id} belongs to {event.stream_id}, not {request.stream_id}"
                    )
        if self._closed:
            raise StoreError("the event store is closed")
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._committer = loop.create_task(self._commit_loop(), name="forgeline-group-commit")
        future: asyncio.Future[list[list[Event]]] = loop.create_future()
        # Secrets never reach the log: every event's payload is redacted on its way in.
        group = tuple(replace(r, events=tuple(map(redact_event, r.events))) for r in requests)
        await self._queue.put(_Pending(group, future))
        return await future

    async def _commit_loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results: BatchResult = await self._commit_batch([p.group for p in batch])
            except BaseException as exc:  # the whole transaction failed
                if isinstance(exc, asyncio.CancelledError):
                    for pending in batch:
                        pending.future.cancel()
                    raise
                error = exc if isinstance(exc, StoreError) else StoreError(f"append failed: {exc}")
                results = [error] * len(batch)
            for pending, result in zip(batch, results, strict=True):
                if not isinstance(result, BaseException):
                    for recorded in result:
                        self._remember(recorded)
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
            await self._announce()

    async def _commit_batch(self, groups: list[Group]) -> BatchResult:
        """Write every group in one durable transaction; a failing group fails alone."""
        return await self._write_path().commit(groups)

    async def save_checkpoint(self, subscriber: str, position: int) -> None:
        """Record that ``subscriber`` has handled everything up to ``position``.

        Goes through the group committer, so checkpoints share the durable commit of
        whatever else is being appended.
        """
        await self.append_batch([AppendRequest("", (), checkpoint=(subscriber, position))])

    # ------------------------------------------------------------------- caching

    def _remember(self, recorded: Sequence[Event]) -> None:
        """Keep events this process just committed (one request's, one stream, in order)."""
        if not recorded:
            return
        for event in recorded:
            self._keep_position(event)
        stream_id = recorded[0].stream_id
        cached = self._streams.get(stream_id)
        if cached is not None and len(cached) == recorded[0].version - 1:
            cached.extend(recorded)
            self._streams.move_to_end(stream_id)
        elif cached is None and recorded[0].version == 1:
            self._keep_stream(stream_id, list(recorded))
        # else another process wrote in between: the next read fills the gap

    def _keep_stream(self, stream_id: str, events: list[Event]) -> None:
        self._streams[stream_id] = events
        self._streams.move_to_end(stream_id)
        while len(self._streams) > self.cached_streams:
            self._streams.popitem(last=False)

    def _keep_position(self, event: Event) -> None:
        self._positions[event.position] = event
        if len(self._positions) > self.cached_positions:
            self._positions.popitem(last=False)

    def _from_row(self, row: Row) -> Event:
        """``event_from_row``, reusing the event if this process has it already."""
        cached = self._positions.get(row[0])
        if cached is not None:
            return cached
        event = event_from_row(row)
        self._keep_position(event)
        return event

    # --------------------------------------------------------------------- reads

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[Event]:
        """The stream's events after ``after_version``. Raises ``StoreError`` naming the
        event if one of them cannot be read."""
        cached = self._streams.get(stream_id)
        if cached is None:
            events = await self._read_stream(stream_id, after_version)
            if after_version == 0 and events and events[-1].version == len(events):
                self._keep_stream(stream_id, list(events))
            return events
        # Versions are dense from 1, so the cached list holds versions 1..known: ask the
        # database only for what came after (another process may have appended).
        known = len(cached)
        newer = await self._read_stream(stream_id, known)
        if newer and self._streams.get(stream_id) is cached and len(cached) == known:
            cached.extend(newer)
        if stream_id in self._streams:
            self._streams.move_to_end(stream_id)
        return [*cached[:known], *newer][after_version:]

    async def _read_stream(self, stream_id: str, after_version: int) -> list[Event]:
        rows = await self._fetch(self.dialect.select_stream, (stream_id, after_version))
        return [self._from_row(r) for r in rows]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with a global position greater than ``after``, in order.

        An event that cannot be read is left out (and logged once, naming it), so one
        damaged row does not stop every subscriber; reading its stream raises."""
        rows = await self._fetch(self.dialect.select_all, (after, limit))
        events: list[Event] = []
        for row in rows:
            try:
                events.append(self._from_row(row))
            except StoreError as exc:
                if row[0] not in self._unreadable:
                    self._unreadable.add(row[0])
                    log.warning("%s", exc)
        return events

    async def last_position(self) -> int:
        """The position of the log's last event (0 for an empty log): a follower that
        starts after it sees only what is recorded from now on."""
        [(position,)] = await self._fetch(self.dialect.select_last_position, ())
        return int(position or 0)

    async def stream_version(self, stream_id: str) -> int:
        [(version,)] = await self._fetch(self.dialect.select_version, (stream_id,))
        return int(version or 0)

    async def get_checkpoint(self, subscriber: str) -> int:
        rows = await self._fetch(self.dialect.select_checkpoint, (subscriber,))
        return int(rows[0][0]) if rows else 0

    # ----------------------------------------------------------------- read models

    async def tasks(self) -> list[TaskRow]:
        return [_task_row(r) for r in await self._fetch(self.dialect.select_tasks, ())]

    async def task(self, task_id: str) -> TaskRow | None:
        rows = await self._fetch(self.dialect.select_task, (task_id,))
        return _task_row(rows[0]) if rows else None

    async def agent_events(self, task_id: str | None = None) -> list[AgentEventRow]:
        if task_id is None:
            rows = await self._fetch(self.dialect.select_agent_events, ())
        else:
            rows = await self._fetch(self.dialect.select_task_agent_events, (task_id,))
        return [AgentEventRow(p, t, a, e, _timestamp(c)) for p, t, a, e, c in rows]

    async def rebuild_projections(self) -> None:
        """Empty the read models and rebuild them from the log."""
        await self._write_path().rebuild()

    # ------------------------------------------------------------- subscriptions

    @property
    def commit_count(self) -> int:
        """How many commits this process has seen (its own, and other processes' that the
        backend told it of); pass it to ``wait_for_append``."""
        return self._commits

    def _condition(self) -> asyncio.Condition:
        if self._appended is None:
            self._appended = asyncio.Condition()
        return self._appended

    async def _announce(self) -> None:
        """Something was committed: wake whoever waits in ``wait_for_append``."""
        self._commits += 1
        appended = self._condition()
        async with appended:
            appended.notify_all()

    async def wait_for_append(self, since: int | None = None) -> None:
        """Return after a commit this process sees, or after ``poll_interval`` (for other
        processes' commits it was not told of).

        With ``since`` (a ``commit_count`` taken before reading), return at once if a
        commit happened after it, so an append between a read and this wait is not
        missed.
        """
        if since is not None and since != self._commits:
            return
        appended = self._condition()
        async with appended:
            if since is not None and since != self._commits:
                return
            # ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for`` can lose a
            # cancellation that comes as the wait ends, and a loop around this wait (a
            # follower) then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await appended.wait()

    async def subscribe(
        self, subscriber: str, *, stop: asyncio.Event | None = None, batch: int = 500
    ) -> AsyncIterator[Event]:
        """Yield every event after ``subscriber``'s saved checkpoint, then follow new ones.

        The caller saves progress (``save_checkpoint`` or ``append(checkpoint=...)``); a
        restarted subscriber resumes after the last saved position. Stops when ``stop``
        is set.
        """
        position = await self.get_checkpoint(subscriber)
        async for event in self.follow(after=position, stop=stop, batch=batch):
            yield event

    async def follow(
        self, *, after: int = 0, stop: asyncio.Event | None = None, batch: int = 500
    ) -> AsyncIterator[Event]:
        """Yield events after global position ``after`` and keep following the log."""
        position = after
        while stop is None or not stop.is_set():
            mark = self._commits
            events = await self.read_all(after=position, limit=batch)
            for event in events:
                yield event
                position = event.position
            if len(events) < batch:
                await self.wait_for_append(mark)

    # ----------------------------------------------------------------- primitives

    @abstractmethod
    async def _open(self) -> Recorder:
        """Connect; return the recorder of the write connection."""

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """The rows of one read (errors translated into ``StoreError``)."""


def _timestamp(value: datetime | str) -> datetime:
    """A timestamp as the backend returns it (SQLite keeps ISO text)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _task_row(row: Row) -> TaskRow:
    id_, status, phase, request, created, updated = row
    return TaskRow(id_, status, phase, request, _timestamp(created), _timestamp(updated))
