"""forgeline's six stages with instant agents: the real store, core, workers and guards.

Every stage agent returns its result event at once (no model, no git, no subprocess), so
what is measured is orchestration: appends with durable group commits, the projections,
reading and folding the task stream, ``decide``, routing, the causation guard and the
workers' checkpoints. The runtime is opened through ``forgeline.runtime`` with the
serving execution (``SharedWorkers``, as a server would), and tasks are submitted the way
``Pipeline.submit`` records them, minus the git worktree.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from forgeline.config import Settings
from forgeline.core.events import (
    ArchitectureProposed,
    CodePrOpened,
    DeployStatus,
    Event,
    NewEvent,
    PlanCreated,
    PlanItem,
    PlanItemCompleted,
    ReviewDecision,
    RunSpec,
    TestResults,
    task_stream,
)
from forgeline.core.reactions import Role, Stage
from forgeline.core.task import Initialize, TaskState, decide
from forgeline.pipeline.assigner import AssignerAgent
from forgeline.pipeline.base import Services, StageAgent, StageRun
from forgeline.pipeline.execution import SharedWorkers
from forgeline.pipeline.runner import Pipeline
from forgeline.runtime import open_runtime
from forgeline.store.base import BatchResult, EventStore, Group

from .common import Clock, Result

PERSISTS = (
    "10 events per task (6 stage results + initiated, dispatch, pr, completed) in 7 commits, "
    "each event with its tasks/agent_events projection rows, and the worker checkpoints; "
    "WAL fsync per commit"
)


def _commit(task_id: str, what: str) -> str:
    return hashlib.sha1(f"{task_id}/{what}".encode()).hexdigest()


class InstantPlanner(StageAgent):
    stage = "planner"

    async def run(self, run: StageRun) -> list[NewEvent]:
        item = PlanItem(id="a", title="the module", files=("app.py",))
        commit = _commit(run.state.task_id, "plan")
        return [run.event(PlanCreated(summary="one module", items=(item,), commit=commit))]


class InstantArchitect(StageAgent):
    stage = "architect"

    async def run(self, run: StageRun) -> list[NewEvent]:
        data = ArchitectureProposed(
            summary="one module",
            adr_path="docs/adr/0001-one-module.md",
            run=RunSpec(kind="cli", command=("python", "app.py")),
            commit=_commit(run.state.task_id, "adr"),
        )
        return [run.event(data)]


class InstantCoder(StageAgent):
    stage = "coder"

    async def run(self, run: StageRun) -> list[NewEvent]:
        data = run.trigger.data
        assert data.type == "plan.item.dispatched", data.type
        commit = _commit(run.state.task_id, data.item_id)
        done = PlanItemCompleted(
            item_id=data.item_id, commit=commit, parent=run.state.head, files=("app.py",)
        )
        return [run.event(done)]


class InstantTester(StageAgent):
    stage = "tester"

    async def run(self, run: StageRun) -> list[NewEvent]:
        return [run.event(TestResults(commit=run.state.head, passed=1, failed=0))]


class InstantFixer(StageAgent):
    stage = "fixer"

    async def run(self, run: StageRun) -> list[NewEvent]:  # never reached: tests pass
        pr = CodePrOpened(branch=run.state.branch, commit=run.state.head, reason="fix")
        return [run.event(pr)]


class InstantReviewer(StageAgent):
    stage = "reviewer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        return [run.event(ReviewDecision(approved=True, commit=run.state.head))]


class InstantDeployer(StageAgent):
    stage = "deployer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        return [run.event(DeployStatus(ok=True, kind="cli", output="ok"))]


AGENT_TYPES: tuple[type[StageAgent], ...] = (
    InstantPlanner,
    AssignerAgent,  # the real one: no model, the registry in the store
    InstantArchitect,
    InstantCoder,
    InstantTester,
    InstantFixer,
    InstantReviewer,
    InstantDeployer,
)


def instant_agents(services: Services) -> Mapping[Stage, StageAgent]:
    return {cls.stage: cls(services) for cls in AGENT_TYPES}


class Probe:
    """Watches commits: when each event became durable, and when each task completed."""

    def __init__(self, store: EventStore) -> None:
        self.committed: dict[str, float] = {}
        self.done: dict[str, asyncio.Future[float]] = {}
        self.dispatch: list[float] = []
        self.commits = 0
        self.groups = 0
        original = store._commit_batch

        async def commit_batch(groups: list[Group]) -> BatchResult:
            results = await original(groups)
            self.commits += 1
            self.groups += len(groups)
            now = time.perf_counter()
            for result in results:
                if isinstance(result, BaseException):
                    continue
                for recorded in result:
                    for event in recorded:
                        self.committed[event.id] = now
                        if event.type in ("task.completed", "task.failed", "task.cancelled"):
                            waiter = self.done.get(event.correlation_id)
                            if waiter is not None and not waiter.done():
                                waiter.set_result(now)
            return results

        store._commit_batch = commit_batch  # type: ignore[method-assign]

    def expect(self, task_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.done[task_id] = future
        return future


class ProbedPipeline(Pipeline):
    """The real ``Pipeline``; it only notes how long each event waited for its handler."""

    probe: Probe

    async def handle(
        self, event: Event, role: Role | None, *, checkpoint: tuple[str, int] | None = None
    ) -> list[Event]:
        committed = self.probe.committed.get(event.id)
        if committed is not None and event.type != "task.initiated":
            self.probe.dispatch.append(time.perf_counter() - committed)
        return await super().handle(event, role, checkpoint=checkpoint)


async def run(
    url: str, tasks: int, inflight: int, concurrency: int, store_name: str, root: Path
) -> Result:
    """Run ``tasks`` tasks, ``inflight`` at a time, on a runtime opened as a server would
    open one (every task served by one set of workers); ``root`` is the workspaces root
    (no worktree is made in it)."""
    result = Result("forgeline", store_name, tasks, inflight, persists=PERSISTS)
    settings = Settings(store=url, workspaces_root=root)

    def serve(pipeline: Pipeline) -> SharedWorkers:
        return SharedWorkers(
            pipeline, concurrency=concurrency, orchestrator_concurrency=max(concurrency, 64)
        )

    def probed(services: Services) -> Pipeline:
        return ProbedPipeline(services, instant_agents(services))

    slots = asyncio.Semaphore(inflight)
    latencies: list[float] = []
    async with open_runtime(settings, agents=False, execution=serve, pipeline=probed) as runtime:
        pipeline = cast(ProbedPipeline, runtime.pipeline)
        workers = cast(SharedWorkers, runtime.execution)
        probe = pipeline.probe = Probe(runtime.store)

        async def one(n: int) -> None:
            async with slots:
                started = time.perf_counter()
                task_id = f"{n:06d}{uuid.uuid4().hex[:6]}"
                waiter = probe.expect(task_id)
                await submit(pipeline, task_id, n)
                latencies.append(await waiter - started)

        clock = Clock()
        await asyncio.gather(*(one(n) for n in range(tasks)))
        result.seconds = clock.elapsed()
        result.cpu_seconds = clock.cpu()
        if (failure := workers.manager.failure()) is not None:
            raise failure
        rows = await runtime.store.tasks()
    result.completed = sum(1 for row in rows if row.status == "completed")
    result.latencies = latencies
    result.dispatch = probe.dispatch
    result.note = (
        f"workers: orchestrator + 7 stages, concurrency {concurrency}; "
        f"{probe.commits} commits, {probe.groups / max(probe.commits, 1):.1f} appends each"
    )
    return result


async def submit(pipeline: Pipeline, task_id: str, n: int) -> None:
    """Record a task as ``Pipeline.submit`` does, without creating its git worktree."""
    command = Initialize(
        task_id=task_id,
        request=f"benchmark task {n}",
        repository="bench",
        branch=f"forgeline/{task_id}",
        base_commit=_commit(task_id, "base"),
        at=pipeline.services.clock(),
    )
    events = decide(TaskState(task_id=task_id), command)
    await pipeline.store.append(task_stream(task_id), events, expected_version=0)


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'forgeline.db'}"
