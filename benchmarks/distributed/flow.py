"""What the distributed benchmark runs: the orchestration benchmark's instant agents, or
the same agents taking ``sleep`` seconds a stage (a model call's wait), in forgeline's
embedded mode (one process, ``SharedWorkers``) or handed to ``forgeline worker``
processes through RabbitMQ (``BrokerExecution`` in the submitter, ``BrokerWorker`` in
each worker, the outbox relay in whichever worker holds the lease).

Tasks are recorded as ``Pipeline.submit`` records them (``forgeline_flow.submit``); their
worktree is an empty directory, which is all a broker worker looks for before it runs a
stage (the instant agents touch no git). A run submits every task at once and ends when
every task is settled; its time is from the first submission to the last
``task.completed`` recorded (the ``tasks`` read model's ``updated_at``), so how often
the submitter looks does not count.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from forgeline.config import Settings
from forgeline.core.events import NewEvent, utcnow
from forgeline.core.reactions import Stage
from forgeline.pipeline.base import Services, StageAgent, StageRun
from forgeline.pipeline.execution import ExecutionFactory, SharedWorkers
from forgeline.pipeline.runner import Pipeline
from forgeline.runtime import Runtime, open_runtime
from forgeline.store.base import TaskRow
from forgeline.transport.execution import BrokerExecution
from forgeline.workspace.layout import WORKTREES

from ..orchestration.common import percentile
from ..orchestration.forgeline_flow import instant_agents, submit

REPOSITORY = "bench"
"""The repository every benchmark task names (``forgeline_flow.submit``)."""
SLEEPING: frozenset[Stage] = frozenset(
    ("planner", "architect", "coder", "tester", "reviewer", "deployer")
)
"""The six stages that wait like a model call in the sleeping runs (the assigner and the
fixer, which is never reached, stay instant)."""
SETTLED = ("completed", "failed", "cancelled")


class Sleeping(StageAgent):
    """A stage agent that waits ``seconds`` (as for a model's answer), then answers as
    the instant agent it wraps."""

    def __init__(self, inner: StageAgent, seconds: float) -> None:
        super().__init__(inner.services)
        self.inner = inner
        self.seconds = seconds
        self.stage = inner.stage  # type: ignore[misc]

    async def run(self, run: StageRun) -> list[NewEvent]:
        await asyncio.sleep(self.seconds)
        return await self.inner.run(run)


def agents(services: Services, sleep: float) -> Mapping[Stage, StageAgent]:
    """The instant agents; with ``sleep`` > 0 the six stages of ``SLEEPING`` wait first."""
    made = instant_agents(services)
    if sleep <= 0:
        return made
    return {s: Sleeping(a, sleep) if s in SLEEPING else a for s, a in made.items()}


def pipeline_factory(sleep: float) -> Callable[[Services], Pipeline]:
    def build(services: Services) -> Pipeline:
        return Pipeline(services, agents(services, sleep))

    return build


@dataclass
class Outcome:
    """One run: ``tasks`` submitted at once, how many completed, in how long."""

    tasks: int
    completed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    """Per task, its submission to its ``task.completed`` (seconds)."""
    error: str = ""

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def p50_ms(self) -> float | None:
        p = percentile(sorted(self.latencies), 50)
        return None if p is None else round(p * 1000, 1)


async def run_tasks(runtime: Runtime, tasks: int, timeout: float) -> Outcome:
    """Submit ``tasks`` tasks at once and wait until every one is settled (or
    ``timeout`` seconds passed)."""
    outcome = Outcome(tasks)
    pipeline = runtime.pipeline
    root = runtime.workspaces.root
    ids = [f"{n:05d}{uuid.uuid4().hex[:7]}" for n in range(tasks)]
    for task_id in ids:  # what a broker worker checks for before a stage
        (root / REPOSITORY / WORKTREES / task_id).mkdir(parents=True)
    started = utcnow()
    await asyncio.gather(*(submit(pipeline, task_id, n) for n, task_id in enumerate(ids)))
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    rows: list[TaskRow] = []
    while True:
        rows = [row for row in await runtime.store.tasks() if row.id in wanted]
        if sum(row.status in SETTLED for row in rows) == tasks:
            break
        if time.monotonic() > deadline:
            outcome.error = f"not settled within {timeout:g} s"
            break
        await asyncio.sleep(0.1)
    done = [row for row in rows if row.status == "completed"]
    outcome.completed = len(done)
    if done:
        outcome.seconds = (max(r.updated_at for r in done) - started).total_seconds()
        outcome.latencies = [(r.updated_at - r.created_at).total_seconds() for r in done]
    if not outcome.error and outcome.completed < tasks:
        outcome.error = f"{tasks - outcome.completed} task(s) did not complete"
    return outcome


async def embedded(
    store: str, root: Path, tasks: int, sleep: float, concurrency: int, timeout: float
) -> Outcome:
    """One process: the serving execution (a worker per stage, ``concurrency`` events
    each at once), as ``forgeline serve`` runs without a broker."""

    def serve(pipeline: Pipeline) -> SharedWorkers:
        return SharedWorkers(pipeline, concurrency=concurrency)

    settings = Settings(store=store, workspaces_root=root, workspace_venv=False)
    async with open_runtime(
        settings, agents=False, execution=serve, pipeline=pipeline_factory(sleep)
    ) as runtime:
        outcome = await run_tasks(runtime, tasks, timeout)
        workers = cast(SharedWorkers, runtime.execution)
        if (failure := workers.manager.failure()) is not None:
            outcome.error = f"{type(failure).__name__}: {failure}"
    return outcome


def broker_settings(store: str, broker: str, root: Path) -> Settings:
    return Settings(store=store, broker=broker, workspaces_root=root, workspace_venv=False)


async def distributed(store: str, broker: str, root: Path, tasks: int, timeout: float) -> Outcome:
    """Submit through the broker (as ``forgeline run --broker`` does) to the worker
    processes already serving ``store``; the submitter runs no stage."""
    execution: ExecutionFactory = BrokerExecution
    async with open_runtime(
        broker_settings(store, broker, root),
        agents=False,
        execution=execution,
        pipeline=pipeline_factory(0.0),
    ) as runtime:
        return await run_tasks(runtime, tasks, timeout)
