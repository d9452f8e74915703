"""Event mode: one worker per role, fed by a store subscription (note 001's worker manager).

A worker reads every event after its saved checkpoint (or only one task's, for
``forgeline run``/``resume``, with a checkpoint of that task's own), hands the ones that concern its
role to ``Pipeline.handle`` (the orchestrator one at a time, in order; the stages up to
``concurrency`` at once, so independent plan items are coded side by side) and advances
its checkpoint past the events it has finished, in order. ``drain()`` stops taking new
events and waits for the ones in flight: SIGINT/SIGTERM call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from forgeline.core.events import Event, task_stream
from forgeline.core.task import ORCHESTRATOR, STAGES
from forgeline.pipeline.runner import Pipeline, Role

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self, pipeline: Pipeline, role: Role, concurrency: int = 4, task_id: str | None = None
    ) -> None:
        self.pipeline = pipeline
        self.role = role
        self.task_id = task_id
        self.name = f"worker:{role}" if task_id is None else f"worker:{role}:{task_id}"
        self.concurrency = 1 if role == ORCHESTRATOR else concurrency
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._done_up_to = 0
        self._seen_up_to = 0
        self._failed: set[int] = set()

    async def run(self, stop: asyncio.Event) -> None:
        store = self.pipeline.store
        start = await store.get_checkpoint(self.name)
        if self.task_id is not None and start == 0:
            first = await store.read_stream(task_stream(self.task_id))
            start = first[0].position - 1 if first else 0
        self._done_up_to = self._seen_up_to = start
        slots = asyncio.Semaphore(self.concurrency)
        try:
            async for event in store.follow(after=self._done_up_to, stop=stop):
                self._seen_up_to = event.position
                if not self.pipeline.concerns(self.role, event):
                    continue
                if self.task_id is not None and event.correlation_id != self.task_id:
                    continue
                if self.concurrency == 1:
                    await self._handle(event, with_checkpoint=True)
                    continue
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                task = asyncio.create_task(self._handle(event))
                task.add_done_callback(lambda _t: slots.release())
                self._in_flight[event.position] = task
                await self._save_progress()
        finally:
            await self._drain()

    async def _handle(self, event: Event, *, with_checkpoint: bool = False) -> None:
        checkpoint = (self.name, event.position) if with_checkpoint else None
        try:
            await self.pipeline.handle(event, self.role, checkpoint=checkpoint)
        except Exception:
            # The store or a tool failed outside the agent's own error handling: the
            # event stays unacknowledged and is handled again on the next start.
            log.exception("%s failed on %s %s", self.name, event.type, event.id)
            self._failed.add(event.position)
            raise
        finally:
            self._in_flight.pop(event.position, None)

    async def _save_progress(self) -> None:
        pending = [p for p, t in self._in_flight.items() if not t.done()] + list(self._failed)
        upto = min(pending) - 1 if pending else self._seen_up_to
        if upto > self._done_up_to:
            self._done_up_to = upto
            await self.pipeline.store.save_checkpoint(self.name, upto)

    async def _drain(self) -> None:
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
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
    ) -> None:
        """``task_id`` limits the workers to one task (``forgeline run``/``resume``)."""
        self.pipeline = pipeline
        self.task_id = task_id
        self.roles: tuple[Role, ...] = tuple(roles or (ORCHESTRATOR, *STAGES))
        self.concurrency = concurrency
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for role in self.roles:
            worker = Worker(self.pipeline, role, self.concurrency, self.task_id)
            self._tasks.append(asyncio.create_task(worker.run(self.stop_event), name=worker.name))

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def failure(self) -> BaseException | None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def drain(self) -> None:
        """Stop taking new events, wait for those being handled, save checkpoints."""
        self.stop_event.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> WorkerManager:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drain()
