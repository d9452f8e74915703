"""Orchestration without extra commits or reads: the folded-state cache, the orchestrator's
reaction recorded with the stage result that triggers it (and decided again when the task
moved on), the orchestrator's interests, and the workers' backlog with its intake cursor.

The stages are the benchmark's instant agents (no model, git or subprocess), so what runs
is the real store, core, ``Pipeline`` and workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from benchmarks.orchestration.forgeline_flow import (
    InstantCoder,
    InstantPlanner,
    instant_agents,
    submit,
)

from forgeline.config import Settings
from forgeline.core.events import (
    ArchitectureProposed,
    DeployStatus,
    Event,
    NewEvent,
    PlanCreated,
    PlanItem,
    PlanItemCompleted,
    PlanItemDispatched,
    ReviewDecision,
    RunSpec,
    StageFailed,
    TaskCancelled,
    TestResults,
    task_stream,
)
from forgeline.core.reactions import ORCHESTRATOR, STAGES, Role, Stage, orchestrator_reacts
from forgeline.core.task import React, decide, fold, next_stage
from forgeline.llm.gateway import ModelRegistry
from forgeline.pipeline.base import Services, StageAgent, StageRun
from forgeline.pipeline.runner import Pipeline
from forgeline.pipeline.workers import Worker, WorkerManager, _Feed
from forgeline.sandbox.local import LocalSpawner
from forgeline.store import SQLiteEventStore
from forgeline.store.base import AppendRequest, EventStore
from forgeline.workspace.layout import Workspaces

AT = datetime(2026, 1, 1, tzinfo=UTC)
ARCHITECTURE = ArchitectureProposed(
    summary="s", adr_path="a.md", run=RunSpec(kind="cli", command=("x",)), commit="c"
)
CHAIN = [
    "task.initiated",
    "plan.created",
    "task.assigned",
    "architecture.proposed",
    "plan.item.dispatched",
    "plan.item.completed",
    "code.pr.opened",
    "test.results",
    "review.decision",
    "deploy.status",
    "task.completed",
]


def make_pipeline(store: EventStore, agents: Mapping[Stage, StageAgent] | None = None) -> Pipeline:
    return Pipeline(services := instant_services(store), agents or instant_agents(services))


def instant_services(store: EventStore) -> Services:
    """Services for the instant agents, which use no model, spawner or worktree."""
    return Services(
        store=store,
        settings=Settings(),
        spawner=LocalSpawner(),
        models=ModelRegistry({}),
        workspaces=Workspaces(Path("/nonexistent")),
    )


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SQLiteEventStore]:
    store = SQLiteEventStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def counting_commits(store: EventStore) -> list[int]:
    """Wrap the store's durable commit; the list holds how many groups each commit had."""
    commits: list[int] = []
    original = store._commit_batch

    async def commit_batch(groups: list[tuple[AppendRequest, ...]]) -> object:
        commits.append(len(groups))
        return await original(groups)

    store._commit_batch = commit_batch  # type: ignore[assignment, method-assign]
    return commits


async def types(store: EventStore, task_id: str) -> list[str]:
    return [e.type for e in await store.read_stream(task_stream(task_id))]


def cancel(task_id: str) -> NewEvent:
    return NewEvent(
        stream_id=task_stream(task_id),
        data=TaskCancelled(reason="stop"),
        correlation_id=task_id,
        actor="user",
        created_at=AT,
    )


# ------------------------------------------------------------------- state cache


async def test_the_cached_state_follows_appends_made_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "forgeline.db"
    async with open_store(db) as ours, open_store(db) as theirs:
        p = make_pipeline(ours)
        await submit(p, "t1", 1)
        assert (await p.state("t1")).status == "running"
        assert p._states["t1"][0].version == 1
        # another process (its own store, its own caches) cancels the task
        await theirs.append(task_stream("t1"), [cancel("t1")])
        state = await p.state("t1")
        assert state.status == "cancelled" and state.version == 2
        assert state == fold("t1", await ours.read_stream(task_stream("t1")))


async def test_a_cached_state_that_is_not_a_prefix_of_the_stream_is_folded_again(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "a.db") as a, open_store(tmp_path / "b.db") as b:
        p = make_pipeline(a)
        await submit(p, "t1", 1)
        await a.append(task_stream("t1"), [cancel("t1")])
        assert (await p.state("t1")).status == "cancelled"
        # the same task id in another store: only its own events count
        p.services.store = b
        await submit(p, "t1", 2)
        state = await p.state("t1")
        assert state.status == "running" and state.request == "benchmark task 2"


# ------------------------------------------------- reactions in the stage's commit


async def test_sequential_run_records_each_reaction_with_its_trigger(tmp_path: Path) -> None:
    async with open_store(tmp_path / "f.db") as store:
        p = make_pipeline(store)
        await submit(p, "t1", 1)
        commits = counting_commits(store)
        state = await p.run_sequential("t1")
        assert state.status == "completed"
        assert await types(store, "t1") == CHAIN
        # planner, assigner, architect (+ dispatch), coder (+ pr), tester, reviewer,
        # deployer (+ completed): seven commits, none of them the orchestrator's own
        assert len(commits) == 7
        events = await store.read_stream(task_stream("t1"))
        by_id = {e.id: e for e in events}
        for e in events:
            if e.actor == ORCHESTRATOR:
                assert e.causation_id is not None
                cause = by_id[e.causation_id]
                assert e.position == cause.position + 1  # recorded right behind it


async def test_event_mode_completes_every_task_with_the_same_chain(tmp_path: Path) -> None:
    async with open_store(tmp_path / "f.db") as store:
        p = make_pipeline(store)
        async with WorkerManager(p, concurrency=4):
            for n in range(12):
                await submit(p, f"t{n}", n)
            for _ in range(400):
                rows = await store.tasks()
                if len(rows) == 12 and all(r.status == "completed" for r in rows):
                    break
                await asyncio.sleep(0.05)
        for n in range(12):
            assert await types(store, f"t{n}") == CHAIN


class CancellingCoder(InstantCoder):
    """Finishes its item while another process cancels the task."""

    other: EventStore

    async def run(self, run: StageRun) -> list[NewEvent]:
        await self.other.append(run.trigger.stream_id, [cancel(run.state.task_id)])
        return await super().run(run)


async def test_a_reaction_is_decided_again_when_the_task_moved_on(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    async with open_store(db) as store, open_store(db) as other:
        services = instant_services(store)
        coder = CancellingCoder(services)
        coder.other = other
        agents = {**instant_agents(services), "coder": coder}
        p = make_pipeline(store, agents)
        await submit(p, "t1", 1)
        state = await p.run_sequential("t1")
        # the coder's state said "running": on it, the finished plan opens the PR. The
        # cancellation came first, so the result is recorded again on the latest state,
        # which is cancelled: nothing of the run is recorded after the cancel.
        assert state.status == "cancelled"
        assert await types(store, "t1") == [*CHAIN[:5], "task.cancelled"]


async def test_an_orchestrator_decision_is_not_recorded_on_a_stale_state(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.db"
    async with open_store(db) as store, open_store(db) as other:
        p = make_pipeline(store)
        await submit(p, "t1", 1)
        await p.handle((await store.read_stream(task_stream("t1")))[0], "planner")
        await p.handle((await store.read_stream(task_stream("t1")))[1], "assigner")
        # the architect's result recorded alone (as a stage's result always was before)
        assigned = (await store.read_stream(task_stream("t1")))[2]
        out = await p.agents["architect"].process_direct(await p.state("t1"), assigned)
        [[architecture]] = await store.append_batch([AppendRequest(task_stream("t1"), out)])
        # the orchestrator reads the task, then another process cancels it before the
        # dispatch is written: the append fails, and on the latest state there is nothing
        original = store.append_batch
        cancelled = False

        async def append_batch(requests: list[AppendRequest]) -> list[list[Event]]:
            nonlocal cancelled
            if not cancelled:
                cancelled = True
                await other.append(task_stream("t1"), [cancel("t1")])
            return await original(requests)

        store.append_batch = append_batch  # type: ignore[method-assign]
        assert await p.handle(architecture, ORCHESTRATOR) == []
        assert cancelled
        assert await types(store, "t1") == [*CHAIN[:4], "task.cancelled"]


class TwoItemPlanner(InstantPlanner):
    async def run(self, run: StageRun) -> list[NewEvent]:
        items = (PlanItem(id="a", title="a"), PlanItem(id="b", title="b"))
        return [run.event(PlanCreated(summary="two", items=items, commit="c0"))]


async def test_the_orchestrator_reacts_to_its_own_dispatch_in_the_same_commit(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "f.db") as store:
        services = instant_services(store)
        p = make_pipeline(store, {**instant_agents(services), "planner": TwoItemPlanner(services)})
        await submit(p, "t1", 1)
        await p.handle((await store.read_stream(task_stream("t1")))[0], None)
        await p.handle((await store.read_stream(task_stream("t1")))[1], None)
        assigned = (await store.read_stream(task_stream("t1")))[2]
        recorded = await p.handle(assigned, "architect")
        # independent items: the first dispatch, and the dispatch that reacts to it
        assert [e.type for e in recorded] == [
            "architecture.proposed",
            "plan.item.dispatched",
            "plan.item.dispatched",
        ]
        assert [e.data.item_id for e in recorded[1:]] == ["a", "b"]  # type: ignore[union-attr]
        assert recorded[2].causation_id == recorded[1].id
        state = await p.run_sequential("t1")
        assert state.status == "completed"
        assert (await types(store, "t1")).count("code.pr.opened") == 1


# ------------------------------------------------------- the orchestrator's interest


def _event(data: object, actor: str = "coder") -> Event:
    return Event(
        stream_id="task-t",
        data=data,  # type: ignore[arg-type]
        correlation_id="t",
        actor=actor,
        created_at=AT,
        version=1,
        position=1,
    )


@pytest.mark.parametrize(
    ("data", "reacts"),
    [
        (TestResults(commit="c", passed=1, failed=0), True),  # skips a review per tier
        (TestResults(commit="c", passed=0, failed=1), True),
        (ReviewDecision(approved=True, commit="c"), False),
        (ReviewDecision(approved=False, commit="c"), True),
        (PlanItemDispatched(item_id="a"), True),
        (PlanItemCompleted(item_id="a", commit="c"), True),
        (StageFailed(stage="coder", error="x"), True),
        (DeployStatus(ok=True, kind="cli", output=""), True),
        (PlanCreated(summary="s", items=(), commit="c"), False),
        (TaskCancelled(reason="x"), False),
    ],
)
def test_orchestrator_interest(data: object, reacts: bool) -> None:
    assert orchestrator_reacts(_event(data).data) is reacts


async def test_no_role_skips_an_event_it_would_act_on(tmp_path: Path) -> None:
    """Over every state of a whole run, and at the round limits: where a role's interest
    (``Pipeline.concerns``, which workers test before reading the task) says no, the
    orchestrator's ``decide`` returns nothing and ``next_stage`` names another stage."""
    async with open_store(tmp_path / "f.db") as store:
        p = make_pipeline(store)
        await submit(p, "t1", 1)
        await p.run_sequential("t1")
        events = await store.read_stream(task_stream("t1"))
    extra = [
        TestResults(commit="c", passed=0, failed=1),
        ReviewDecision(approved=False, commit="c"),
        ARCHITECTURE,
        StageFailed(stage="coder", error="x"),
    ]
    candidates = [*events, *(_event(d) for d in extra)]
    limits = {"max_fix_rounds": 0, "max_review_rounds": 0}
    acted = set()
    for n in range(1, len(events) + 1):
        base = fold("t1", events[:n])
        running = base.model_copy(update={"status": "running"})
        for state in (base, running, running.model_copy(update=limits)):
            for event in candidates:
                if decide(state, React(event=event, at=AT)):
                    assert p.concerns(ORCHESTRATOR, event), event.type
                    acted.add((ORCHESTRATOR, event.type))
                if (stage := next_stage(state, event)) is not None:
                    assert p.concerns(stage, event), (stage, event.type)
                    acted.add((stage, event.type))
                    for other in STAGES:
                        if other != stage:
                            assert not p.concerns(other, event), (other, event.type)
    assert ("fixer", "test.results") in acted and ("reviewer", "test.results") in acted
    assert (ORCHESTRATOR, "plan.item.dispatched") in acted


# ------------------------------------------------------- workers: backlog and intake


class FakePipeline:
    """What a ``Worker`` uses of a ``Pipeline``; ``handle`` notes its calls, and the
    planner's wait for ``gate``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.real = pipeline
        self.store = pipeline.store
        self.gate = asyncio.Event()
        self.calls: list[tuple[Role | None, str, int]] = []

    def concerns(self, role: Role, event: Event) -> bool:
        return self.real.concerns(role, event)

    async def handle(self, event: Event, role: Role | None) -> list[Event]:
        self.calls.append((role, event.type, event.position))
        if role == "planner":
            await self.gate.wait()
        return []


async def test_a_full_backlog_holds_back_neither_the_other_roles_nor_its_own_events(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "f.db") as store:
        fake = FakePipeline(make_pipeline(store))
        for n in range(40):
            await submit(fake.real, f"t{n:02d}", n)
        plan = NewEvent(
            stream_id=task_stream("t00"),
            data=PlanCreated(summary="s", items=(), commit="c"),
            correlation_id="t00",
            causation_id="x",
            actor="planner",
            created_at=AT,
        )
        [late] = await store.append(task_stream("t00"), [plan])
        stop = asyncio.Event()
        feed = _Feed(store, stop, page=3)
        planner = Worker(fake, "planner", concurrency=2)  # type: ignore[arg-type]
        planner.max_backlog = 4
        planner.intake_page = 5
        assigner = Worker(fake, "assigner", concurrency=2)  # type: ignore[arg-type]
        for worker in (planner, assigner):
            await worker.start_position()
            worker._inbox = feed.inbox()
        tasks = [asyncio.create_task(w.run(stop, feed)) for w in (planner, assigner)]
        tasks.append(asyncio.create_task(feed.run(0)))
        # the planner is stuck on its first two tasks, with 38 more queued before the
        # assigner's event: the assigner gets it all the same
        for _ in range(200):
            if ("assigner", "plan.created", late.position) in fake.calls:
                break
            await asyncio.sleep(0.01)
        assert ("assigner", "plan.created", late.position) in fake.calls
        assert [c for c in fake.calls if c[0] == "planner"] == [
            ("planner", "task.initiated", 1),
            ("planner", "task.initiated", 2),
        ]
        assert planner._behind and len(planner._backlog) <= planner.max_backlog
        assert planner._safe_position() == 0
        fake.gate.set()  # the planner reads the rest back from its intake cursor
        for _ in range(300):
            if sum(1 for c in fake.calls if c[0] == "planner") == 40:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*tasks)
        planned = [c[2] for c in fake.calls if c[0] == "planner"]
        assert planned == list(range(1, 41))  # each once, in order
        assert await store.get_checkpoint("worker:planner") == late.position
        assert await store.get_checkpoint("worker:assigner") == late.position


async def test_an_event_whose_reaction_is_in_the_same_page_is_not_handled(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "f.db") as store:
        fake = FakePipeline(make_pipeline(store))
        await submit(fake.real, "t1", 1)
        architecture = NewEvent(
            stream_id=task_stream("t1"),
            data=ARCHITECTURE,
            correlation_id="t1",
            causation_id="plan",
            actor="architect",
            created_at=AT,
        )
        [arch] = await store.append(task_stream("t1"), [architecture])
        dispatch = NewEvent(
            stream_id=task_stream("t1"),
            data=PlanItemDispatched(item_id="a"),
            correlation_id="t1",
            causation_id=arch.id,
            actor=ORCHESTRATOR,
            created_at=AT,
        )
        [dispatched] = await store.append(task_stream("t1"), [dispatch])
        stop = asyncio.Event()
        worker = Worker(fake, ORCHESTRATOR)  # type: ignore[arg-type]
        run = asyncio.create_task(worker.run(stop))
        for _ in range(100):
            if fake.calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        stop.set()
        await run
        # the architect's event (its reaction already recorded) is skipped; the dispatch
        # is the orchestrator's to look at; task.initiated never concerns it
        assert fake.calls == [(ORCHESTRATOR, "plan.item.dispatched", dispatched.position)]
