"""How recorded work gets done: the execution seam between submitting and running.

Submitting a task only records it (``Pipeline.submit``); an ``Execution`` makes the
stages and the orchestrator act on what is recorded. ``drive(task, stop)`` returns once
the task is settled (finished, or waiting for a person) or ``stop`` is set.

- ``Sequential``: direct calls in this process, one step after another (note 001's
  fallback), for the one task being driven.
- ``TaskWorkers``: embedded event mode for one task: a worker per role in this process,
  scoped to the task (``forgeline run``/``resume``/``answer``), started for each
  ``drive`` and drained (in-flight work finished and recorded) when it ends.
- ``SharedWorkers``: embedded event mode for every task in the store: one unscoped
  worker manager for the runtime's whole life (a server, the evolution daemon); ``drive``
  only waits, because the workers act on every task anyway.
- A broker that hands work to remote workers (``forgeline worker``) is another
  ``Execution`` of the waiting kind: ``start`` connects, ``drive`` waits, ``close``
  disconnects.

``owns_task`` says whether ``drive`` does the task's work here and alone; the runtime
then puts the task's worktree back at its last recorded commit before driving
(``Pipeline.recover``). Stopping a task's work promptly goes through
``Pipeline.interrupt(task_id)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Literal

from forgeline.core.task import settled
from forgeline.pipeline.assigner import Assignments
from forgeline.pipeline.runner import Pipeline
from forgeline.pipeline.workers import WorkerManager

Mode = Literal["event", "sequential"]


class Execution(ABC):
    owns_task: ClassVar[bool] = True
    """``drive`` does the task's work in this process and nobody else works on it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def start(self) -> None:  # noqa: B027 (a hook: most executions need none)
        """Begin serving (once, when the runtime opens)."""

    async def close(self) -> None:  # noqa: B027
        """Stop taking work and let the work in flight finish and be recorded."""

    @abstractmethod
    async def drive(self, task_id: str, stop: asyncio.Event) -> None:
        """Until the task is settled or ``stop`` is set (then the step in flight is
        finished and recorded first)."""


ExecutionFactory = Callable[[Pipeline], Execution]


class Sequential(Execution):
    async def drive(self, task_id: str, stop: asyncio.Event) -> None:
        await self.pipeline.run_sequential(task_id, stop=stop)


class TaskWorkers(Execution):
    def __init__(self, pipeline: Pipeline, concurrency: int = 4) -> None:
        super().__init__(pipeline)
        self.concurrency = concurrency

    async def drive(self, task_id: str, stop: asyncio.Event) -> None:
        manager = WorkerManager(self.pipeline, concurrency=self.concurrency, task_id=task_id)
        async with manager, serving_assignments(self.pipeline):
            await wait_until_settled(self.pipeline, task_id, stop, manager.failure)


class SharedWorkers(Execution):
    owns_task = False

    def __init__(
        self, pipeline: Pipeline, concurrency: int = 4, orchestrator_concurrency: int = 64
    ) -> None:
        super().__init__(pipeline)
        self.manager = WorkerManager(
            pipeline, concurrency=concurrency, orchestrator_concurrency=orchestrator_concurrency
        )
        self._assignments = contextlib.AsyncExitStack()

    async def start(self) -> None:
        self.manager.start()
        self._assignments = contextlib.AsyncExitStack()
        await self._assignments.enter_async_context(serving_assignments(self.pipeline))

    async def close(self) -> None:
        await self.manager.drain()
        await self._assignments.aclose()

    async def drive(self, task_id: str, stop: asyncio.Event) -> None:
        await wait_until_settled(self.pipeline, task_id, stop, self.manager.failure)


@contextlib.asynccontextmanager
async def serving_assignments(pipeline: Pipeline) -> AsyncIterator[None]:
    """Give waiting tasks agents as agents free up (``Assignments.serve``), meanwhile."""
    stop = asyncio.Event()
    serving = asyncio.create_task(
        Assignments(pipeline.store, pipeline.services.clock).serve(stop), name="assignments"
    )
    try:
        yield
    finally:
        stop.set()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def for_mode(mode: Mode) -> ExecutionFactory:
    """The task-scoped execution of ``mode`` (the CLI's ``--mode``)."""
    return Sequential if mode == "sequential" else TaskWorkers


async def wait_until_settled(
    pipeline: Pipeline,
    task_id: str,
    stop: asyncio.Event,
    failure: Callable[[], BaseException | None] = lambda: None,
) -> None:
    """Wait until the task is settled or ``stop`` is set, re-reading its state whenever
    something is appended (here, or every poll interval for other processes); raise what
    ``failure()`` returns (a worker that stopped on an error)."""
    store = pipeline.store
    while not stop.is_set():
        mark = store.commit_count
        if settled(await pipeline.state(task_id)):
            return
        if (error := failure()) is not None:
            raise error
        await wait_first(store.wait_for_append(mark), stop.wait())


async def wait_first(*waits: Awaitable[object]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
