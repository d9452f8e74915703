"""The event store contract, shared by every backend.

Appends go through a group committer: requests that arrive while a commit is in flight are
written together in the next transaction, so concurrent tasks share one durable commit.
Each group of requests in a batch is isolated (a savepoint per group), so one stale
expected version or duplicate does not fail its neighbours.

Backends implement four primitives (``_commit_batch``, ``_read_stream``, ``_read_all``,
``_get_checkpoint``) plus the two read models; everything else lives here once, including
the in-memory copies of recorded events that spare repeated reads their parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from forgeline.core.events import Event, NewEvent, parse_data
from forgeline.errors import StoreError
from forgeline.redaction import redact_event

EVENT_COLUMNS = (
    "position, id, stream_id, version, type, data, correlation_id, causation_id, actor, created_at"
)
"""The column order every backend selects events in (``event_from_row`` reads it)."""


def event_from_row(row: Sequence[Any]) -> Event:
    """An ``Event`` from a row in ``EVENT_COLUMNS`` order (``created_at`` as a datetime or
    ISO text, ``data`` as JSON text)."""
    position, id_, stream_id, version, _type, data, corr, cause, actor, created = row
    return Event(
        position=position,
        id=id_,
        stream_id=stream_id,
        version=version,
        data=parse_data(data),
        correlation_id=corr,
        causation_id=cause,
        actor=actor,
        created_at=created,
    )


def recorded_event(event: NewEvent, version: int, position: int) -> Event:
    """``event`` as recorded. Its fields were validated when it was built, so they are
    copied, not validated again (what ``Event.model_construct`` does, without its walk
    over every field's aliases and defaults: ``event`` has them all)."""
    if not _PLAIN_EVENT:
        return Event.model_construct(None, **dict(event), version=version, position=position)
    fields = {**event.__dict__, "version": version, "position": position}
    recorded = Event.__new__(Event)
    object.__setattr__(recorded, "__dict__", fields)
    object.__setattr__(recorded, "__pydantic_fields_set__", set(fields))
    object.__setattr__(recorded, "__pydantic_extra__", None)
    object.__setattr__(recorded, "__pydantic_private__", None)
    return recorded


_PLAIN_EVENT = (
    set(Event.model_fields) == set(NewEvent.model_fields) | {"version", "position"}
    and not any(f.alias or f.validation_alias for f in Event.model_fields.values())
    and not Event.__private_attributes__
    and not Event.__pydantic_post_init__
    and Event.model_config.get("extra") != "allow"
)
"""``Event`` is built from its fields alone, so ``recorded_event`` may set them directly."""


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

    max_batch = 512
    poll_interval = 0.25
    """How often a subscriber looks for events written by other processes."""
    cached_streams = 32768
    """How many streams' events are kept in memory (least recently used go first)."""
    cached_positions = 65536
    """How many recent events are kept by position, so a page of the log read back is not
    parsed again."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Pending] | None = None
        self._committer: asyncio.Task[None] | None = None
        self._appended: asyncio.Condition | None = None
        self._closed = False
        self._commits = 0
        # Recorded events never change, so what was written or read once is kept: a
        # stream's events 1..n (a read asks the database only for versions after n) and
        # recent events by position (rows read back reuse them instead of parsing).
        self._streams: OrderedDict[str, list[Event]] = OrderedDict()
        self._positions: OrderedDict[int, Event] = OrderedDict()

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Create the schema if needed. Idempotent."""
        await self._open()

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        self._closed = True
        await self._close()

    async def __aenter__(self) -> EventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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
            self._appended = asyncio.Condition()
            self._committer = loop.create_task(self._commit_loop(), name="forgeline-group-commit")
        future: asyncio.Future[list[list[Event]]] = loop.create_future()
        # Secrets never reach the log: every event's payload is redacted on its way in.
        group = tuple(replace(r, events=tuple(map(redact_event, r.events))) for r in requests)
        await self._queue.put(_Pending(group, future))
        return await future

    async def _commit_loop(self) -> None:
        assert self._queue is not None
        assert self._appended is not None
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
            self._commits += 1
            async with self._appended:
                self._appended.notify_all()

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

    def _from_row(self, row: Sequence[Any]) -> Event:
        """``event_from_row``, reusing the event if this process has it already."""
        cached = self._positions.get(row[0])
        if cached is not None:
            return cached
        event = event_from_row(row)
        self._keep_position(event)
        return event

    # --------------------------------------------------------------------- reads

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[Event]:
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

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with a global position greater than ``after``, in order."""
        return await self._read_all(after, limit)

    async def stream_version(self, stream_id: str) -> int:
        events = await self._read_stream(stream_id, 0)
        return events[-1].version if events else 0

    async def get_checkpoint(self, subscriber: str) -> int:
        return await self._get_checkpoint(subscriber)

    @property
    def commit_count(self) -> int:
        """How many batches this process has committed; pass it to ``wait_for_append``."""
        return self._commits

    async def wait_for_append(self, since: int | None = None) -> None:
        """Return after this process appends, or after ``poll_interval`` (other processes).

        With ``since`` (a ``commit_count`` taken before reading), return at once if a
        commit happened after it, so an append between a read and this wait is not
        missed.
        """
        if self._appended is None:
            await asyncio.sleep(self.poll_interval)
            return
        if since is not None and since != self._commits:
            return
        wait = self.poll_interval
        async with self._appended:
            if since is not None and since != self._commits:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), wait)

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

    # ----------------------------------------------------------------- read models

    @abstractmethod
    async def tasks(self) -> list[TaskRow]: ...

    @abstractmethod
    async def task(self, task_id: str) -> TaskRow | None: ...

    @abstractmethod
    async def agent_events(self, task_id: str | None = None) -> list[AgentEventRow]: ...

    @abstractmethod
    async def rebuild_projections(self) -> None:
        """Drop the read models and rebuild them from the log."""

    # ----------------------------------------------------------------- primitives

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _commit_batch(self, groups: list[Group]) -> BatchResult:
        """Write every group in one durable transaction, each isolated by a savepoint."""

    @abstractmethod
    async def _read_stream(self, stream_id: str, after_version: int) -> list[Event]: ...

    @abstractmethod
    async def _read_all(self, after: int, limit: int) -> list[Event]: ...

    @abstractmethod
    async def _get_checkpoint(self, subscriber: str) -> int: ...
