"""Event mode: one worker per role, fed by a store subscription (note 001's worker manager).

A worker takes every event after its saved checkpoint (or only one task's, for
``forgeline run``/``resume``, with a checkpoint of that task's own), hands the ones that
concern its role to ``Pipeline.handle`` and advances its checkpoint past the events it has
finished, in order. The stages run up to ``concurrency`` events at once, so independent
plan items are coded side by side; the orchestrator runs one event at a time *per task*,
in order, and different tasks side by side. ``drain()`` stops taking new events and waits
for the ones in flight: SIGINT/SIGTERM call it.

The workers of one manager share a single reader of the log (``_Feed``): each page is read
and parsed once and handed to every worker. A worker takes the events of its role from a
page into its backlog and starts them as its concurrency allows, so one busy role (a
planner with thousands of queued tasks) does not hold the others back. A backlog holds at
most ``max_backlog`` events: when it is full the worker stops taking, remembers where
(its intake cursor, ``_taken_up_to``), lets the pages go by, and once the backlog has
drained to half reads the log itself from that cursor until it has caught up with the
feed. An event whose effect by this role is already in the page (the causation guard's
condition) is not taken at all. Checkpoints are saved at most every
``checkpoint_interval`` seconds and when the worker stops, through the store's group
commit. A checkpoint only says where to start again: handling an event twice has one
effect (the causation guard in ``Pipeline.handle``), so a checkpoint that lags after a
crash costs a re-check, never a repeated stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from forgeline.core.events import Event, task_stream
from forgeline.core.reactions import ORCHESTRATOR, ROLES, Role
from forgeline.errors import ForgelineError, StoreError
from forgeline.pipeline.runner import Pipeline, StageInterrupted
from forgeline.store.base import EventStore

log = logging.getLogger(__name__)


class _Inbox:
    """Pages of events for one worker; at most ``room`` waiting (the reader waits)."""

    def __init__(self, room: int = 2) -> None:
        self._pages: deque[list[Event]] = deque()
        self._room = room
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.closed = False
        """No page will come any more."""
        self.abandoned = False
        """The worker stopped reading: the reader no longer waits for it."""

    async def put(self, page: list[Event]) -> None:
        while len(self._pages) >= self._room and not self.abandoned:
            self._space.clear()
            await self._space.wait()
        if not self.abandoned:
            self._pages.append(page)
            self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    def abandon(self) -> None:
        self.abandoned = True
        self._pages.clear()
        self._space.set()

    async def get(self) -> list[Event] | None:
        """The next page; ``[]`` when woken with none; ``None`` once closed and empty."""
        if not self._pages:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
            if not self._pages:
                return None if self.closed else []
        page = self._pages.popleft()
        self._space.set()
        return page


class _Feed:
    """Reads the log once for several workers and hands each page to all of them."""

    def __init__(self, store: EventStore, stop: asyncio.Event, page: int = 100) -> None:
        self.store = store
        self.stop = stop
        self.page = page
        self.inboxes: list[_Inbox] = []

    def inbox(self) -> _Inbox:
        inbox = _Inbox()
        self.inboxes.append(inbox)
        return inbox

    async def run(self, after: int) -> None:
        position = after
        try:
            while not self.stop.is_set():
                if all(i.abandoned for i in self.inboxes):
                    return
                mark = self.store.commit_count
                events = await self.store.read_all(after=position, limit=self.page)
                if events:
                    position = events[-1].position
                    for inbox in self.inboxes:
                        await inbox.put(events)
                if len(events) < self.page:
                    await self.store.wait_for_append(mark)
        finally:
            for inbox in self.inboxes:
                inbox.close()


class Worker:
    checkpoint_interval = 0.25
    """Seconds between checkpoint saves while events are being handled."""
    max_backlog = 1024
    """Events taken but not started yet, at most; beyond, the worker reads them back from
    the log later (its intake cursor) instead of keeping them."""
    intake_page = 500
    """Events per read when catching up from the intake cursor."""

    def __init__(
        self, pipeline: Pipeline, role: Role, concurrency: int = 4, task_id: str | None = None
    ) -> None:
        self.pipeline = pipeline
        self.role = role
        self.task_id = task_id
        self.name = f"worker:{role}" if task_id is None else f"worker:{role}:{task_id}"
        self.concurrency = concurrency
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}
        """The orchestrator's latest handler per task: the next one waits for it."""
        self._done_up_to = 0
        self._taken_up_to = 0
        """The intake cursor: every event up to here is in the backlog, started or not
        this worker's."""
        self._fed_up_to = 0
        """The last position the feed has handed this worker."""
        self._behind = False
        """The backlog filled up: events after ``_taken_up_to`` are read back from the
        log once it has room."""
        self._backlog: deque[Event] = deque()
        self._closing = False
        self._stop: asyncio.Event | None = None
        self._failed: set[int] = set()
        self._error: BaseException | None = None
        self._inbox: _Inbox | None = None
        self._saver: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None

    async def start_position(self) -> int:
        """The position after which this worker starts: its checkpoint, or for a worker of
        one task that never ran, just before the task's first event."""
        store = self.pipeline.store
        start = await store.get_checkpoint(self.name)
        if self.task_id is not None and start == 0:
            first = await store.read_stream(task_stream(self.task_id))
            start = first[0].position - 1 if first else 0
        self._done_up_to = self._taken_up_to = self._fed_up_to = start
        return start

    async def run(self, stop: asyncio.Event, feed: _Feed | None = None) -> None:
        """Handle events until ``stop`` is set. Without ``feed`` (a manager's shared
        reader, joined after ``start_position``), the worker reads the log itself."""
        reader: asyncio.Task[None] | None = None
        if feed is None:
            start = await self.start_position()
            feed = _Feed(self.pipeline.store, stop)
            self._inbox = feed.inbox()
            reader = asyncio.create_task(feed.run(start), name=f"{self.name}:feed")
        elif self._inbox is None:
            self._inbox = feed.inbox()
        inbox = self._inbox
        self._stop = stop
        try:
            while self._error is None and not stop.is_set():
                if self._behind and len(self._backlog) <= self.max_backlog // 2:
                    await self._catch_up()
                else:
                    page = await inbox.get()
                    if page is None:
                        break
                    if page:
                        self._fed_up_to = max(self._fed_up_to, page[-1].position)
                        if not self._behind:
                            self._take(page)
                self._fill()
                self._progressed()
        finally:
            self._closing = True
            inbox.abandon()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await self._drain()
        if self._error is not None:
            raise self._error

    def _concerns(self, event: Event) -> bool:
        if not self.pipeline.concerns(self.role, event):
            return False
        return self.task_id is None or event.correlation_id == self.task_id

    def _take(self, events: Sequence[Event]) -> None:
        """Put this role's events of ``events`` (a page of the log) in the backlog, up to
        ``max_backlog``; the rest is read back later from the intake cursor."""
        done: set[tuple[str, str, str]] | None = None
        for event in events:
            if event.position <= self._taken_up_to:
                continue  # taken already (before this worker's start, or caught up)
            if len(self._backlog) >= self.max_backlog:
                self._behind = True
                return
            if self._concerns(event):
                if done is None:  # what this page shows done already: the causation
                    # guard's condition, a result on the same stream by cause and actor
                    # (not a change tracker's opening steps, which a killed run leaves)
                    done = {
                        (e.stream_id, e.causation_id, e.actor) for e in events if e.causation_id
                    }
                key = (event.stream_id, event.id, self.role)
                if event.type == "budget.approved" or key not in done:
                    self._backlog.append(event)
            self._taken_up_to = event.position

    async def _catch_up(self) -> None:
        """Read the log from the intake cursor (the backlog has room again)."""
        store = self.pipeline.store
        events = await store.read_all(after=self._taken_up_to, limit=self.intake_page)
        self._behind = False
        self._take(events)
        if events and not self._behind and self._taken_up_to < self._fed_up_to:
            self._behind = True  # more to read before the feed's pages are new again

    def _fill(self) -> None:
        """Start backlog events while there is room."""
        stop = self._stop
        while (
            self._backlog
            and len(self._in_flight) < self.concurrency
            and self._error is None
            and not self._closing
            and not (stop is not None and stop.is_set())
        ):
            self._start(self._backlog.popleft())

    def _start(self, event: Event) -> None:
        before: asyncio.Task[None] | None = None
        if self.role == ORCHESTRATOR:
            before = self._tails.get(event.correlation_id)
        task = asyncio.create_task(self._handle(event, before))
        self._in_flight[event.position] = task
        if self.role == ORCHESTRATOR:
            self._tails[event.correlation_id] = task

        def finished(t: asyncio.Task[None]) -> None:
            self._in_flight.pop(event.position, None)
            if self._tails.get(event.correlation_id) is t:
                del self._tails[event.correlation_id]
            self._fill()
            inbox = self._inbox
            if inbox is not None and self._behind and len(self._backlog) <= self.max_backlog // 2:
                inbox.wake()  # room again: read on from the intake cursor
            self._progressed()

        task.add_done_callback(finished)

    async def _handle(self, event: Event, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])
        try:
            await self.pipeline.handle(event, self.role)
        except StageInterrupted as exc:
            # Stopped on purpose (``Pipeline.interrupt``): nothing was recorded, and the
            # event stays unacknowledged for the next start.
            log.info("%s: %s", self.name, exc)
            self._failed.add(event.position)
        except Exception as exc:
            # The store or a tool failed outside the agent's own error handling: the
            # event stays unacknowledged and is handled again on the next start. The
            # orchestrator stops altogether (the CLI re-raises its failure), and so does
            # any worker the store fails (it would fail every event after).
            if isinstance(exc, ForgelineError):  # says what is wrong: no traceback
                log.error("%s failed on %s %s: %s", self.name, event.type, event.id, exc)
            else:
                log.exception("%s failed on %s %s", self.name, event.type, event.id)
            self._failed.add(event.position)
            stops = self.role == ORCHESTRATOR or isinstance(exc, StoreError)
            if stops and self._error is None:
                self._error = exc
                if self._inbox is not None:
                    self._inbox.wake()

    # ---------------------------------------------------------------- checkpoints

    def _safe_position(self) -> int:
        pending = [p for p, t in self._in_flight.items() if not t.done()] + list(self._failed)
        if self._backlog:
            pending.append(self._backlog[0].position)
        return min(pending) - 1 if pending else self._taken_up_to

    def _progressed(self) -> None:
        """Schedule a checkpoint save, unless one is already due."""
        if self._saver is not None or self._safe_position() <= self._done_up_to:
            return
        loop = asyncio.get_running_loop()
        self._saver = loop.call_later(self.checkpoint_interval, self._save_soon)

    def _save_soon(self) -> None:
        self._saver = None
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save_progress())

    async def _save_progress(self) -> None:
        upto = self._safe_position()
        if upto > self._done_up_to:
            await self.pipeline.store.save_checkpoint(self.name, upto)
            self._done_up_to = max(self._done_up_to, upto)

    async def _drain(self) -> None:
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._saver is not None:
            self._saver.cancel()
            self._saver = None
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._save_progress()


class WorkerManager:
    """Starts a worker per role and stops them, letting in-flight work finish."""

    def __init__(
        self,
        pipeline: Pipeline,
        roles: Sequence[Role] | None = None,
        concurrency: int = 4,
        task_id: str | None = None,
        orchestrator_concurrency: int = 64,
    ) -> None:
        """``task_id`` limits the workers to one task (``forgeline run``/``resume``).
        ``concurrency`` is how many events each stage handles at once;
        ``orchestrator_concurrency`` how many tasks the orchestrator decides for at once
        (each task's events still one at a time, in order)."""
        self.pipeline = pipeline
        self.task_id = task_id
        self.roles: tuple[Role, ...] = tuple(roles or ROLES)
        self.concurrency = concurrency
        self.orchestrator_concurrency = orchestrator_concurrency
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._starting = asyncio.create_task(self._start(), name="forgeline-workers")

    async def _start(self) -> None:
        workers = [
            Worker(
                self.pipeline,
                role,
                self.orchestrator_concurrency if role == ORCHESTRATOR else self.concurrency,
                self.task_id,
            )
            for role in self.roles
        ]
        feed = _Feed(self.pipeline.store, self.stop_event)
        starts = [await worker.start_position() for worker in workers]
        for worker in workers:
            worker._inbox = feed.inbox()
            self._tasks.append(
                asyncio.create_task(worker.run(self.stop_event, feed), name=worker.name)
            )
        self._tasks.append(asyncio.create_task(feed.run(min(starts)), name="forgeline-feed"))

    def failure(self) -> BaseException | None:
        for task in (self._starting, *self._tasks):
            if task is None or not task.done() or task.cancelled():
                continue
            if (error := task.exception()) is not None:
                return error
        return None

    async def drain(self) -> None:
        """Stop taking new events, wait for those being handled, save checkpoints."""
        self.stop_event.set()
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> WorkerManager:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drain()
