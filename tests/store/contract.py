"""Every behaviour of the EventStore contract, once. Backends subclass ``StoreContract``
and provide a ``store`` fixture that yields an open, empty store."""

from __future__ import annotations

import asyncio

import pytest

from forgeline.core.events import (
    NewEvent,
    PlanItemDispatched,
    PreviewStopped,
    TaskCancelled,
    TaskInitiated,
    TestResults,
)
from forgeline.errors import ConcurrencyError, DuplicateEventError
from forgeline.store.base import AppendRequest, EventStore


def initiated(task: str, request: str = "build a thing") -> NewEvent:
    return NewEvent(
        stream_id=f"task-{task}",
        data=TaskInitiated(request=request, repository="w", branch=f"b/{task}", base_commit="c0"),
        correlation_id=task,
        actor="user",
    )


def dispatched(task: str, item: str, cause: str | None = None) -> NewEvent:
    return NewEvent(
        stream_id=f"task-{task}",
        data=PlanItemDispatched(item_id=item),
        correlation_id=task,
        causation_id=cause,
        actor="planner",
    )


class StoreContract:
    async def test_append_assigns_versions_and_positions(self, store: EventStore) -> None:
        a = await store.append("task-a", [initiated("a"), dispatched("a", "1")], expected_version=0)
        b = await store.append("task-b", [initiated("b")], expected_version=0)
        assert [e.version for e in a] == [1, 2]
        assert [e.version for e in b] == [1]
        assert a[0].position < a[1].position < b[0].position

    async def test_read_stream_round_trips_typed_payloads(self, store: EventStore) -> None:
        written = await store.append("task-a", [initiated("a", "todo cli"), dispatched("a", "x")])
        read = await store.read_stream("task-a")
        assert read == written
        first = read[0].data
        assert isinstance(first, TaskInitiated)
        assert first.request == "todo cli"
        assert await store.read_stream("task-a", after_version=1) == written[1:]
        assert await store.stream_version("task-a") == 2
        assert await store.read_stream("task-none") == []

    async def test_stale_expected_version_is_rejected_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("task-a", [initiated("a")], expected_version=0)
        with pytest.raises(ConcurrencyError) as info:
            await store.append(
                "task-a", [dispatched("a", "1"), dispatched("a", "2")], expected_version=0
            )
        assert info.value.actual == 1
        assert "expected 0" in str(info.value)
        assert len(await store.read_stream("task-a")) == 1

    async def test_second_output_for_same_cause_is_rejected(self, store: EventStore) -> None:
        [cause] = await store.append("task-a", [initiated("a")])
        await store.append("task-a", [dispatched("a", "1", cause.id)])
        with pytest.raises(DuplicateEventError):
            await store.append("task-a", [dispatched("a", "1", cause.id)])
        # a different type with the same cause is a different effect
        other = NewEvent(
            stream_id="task-a",
            data=TaskCancelled(),
            correlation_id="a",
            causation_id=cause.id,
            actor="user",
        )
        await store.append("task-a", [other])
        assert [e.type for e in await store.read_stream("task-a")] == [
            "task.initiated",
            "plan.item.dispatched",
            "task.cancelled",
        ]

    async def test_the_same_event_recorded_twice_is_a_duplicate(self, store: EventStore) -> None:
        # Orchestration events have deterministic ids: deciding twice yields the same id.
        [cause] = await store.append("task-a", [initiated("a")])
        again = dispatched("a", "1", cause.id)
        await store.append("task-a", [again])
        with pytest.raises(DuplicateEventError):
            await store.append("task-a", [again])
        uncaused = dispatched("a", "2")
        await store.append("task-a", [uncaused])
        with pytest.raises(DuplicateEventError):
            await store.append("task-a", [uncaused])
        assert len(await store.read_stream("task-a")) == 3

    async def test_one_failing_request_does_not_fail_its_batch_neighbours(
        self, store: EventStore
    ) -> None:
        await store.append("task-a", [initiated("a")])
        results = await asyncio.gather(
            *(
                store.append(f"task-n{i}", [initiated(f"n{i}")], expected_version=0)
                for i in range(20)
            ),
            store.append("task-a", [dispatched("a", "z")], expected_version=0),
            return_exceptions=True,
        )
        assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
        assert sum(isinstance(r, list) for r in results) == 20
        assert len(await store.read_all(after=0)) == 21

    async def test_concurrent_appends_to_one_stream_keep_versions_dense(
        self, store: EventStore
    ) -> None:
        await asyncio.gather(
            *(store.append("task-a", [dispatched("a", str(i))]) for i in range(50))
        )
        events = await store.read_stream("task-a")
        assert [e.version for e in events] == list(range(1, 51))

    async def test_read_all_after_position_in_global_order(self, store: EventStore) -> None:
        for i in range(5):
            await store.append(f"task-{i}", [initiated(str(i))])
        everything = await store.read_all(after=0)
        assert [e.position for e in everything] == sorted(e.position for e in everything)
        tail = await store.read_all(after=everything[1].position, limit=2)
        assert tail == everything[2:4]

    async def test_checkpoints_persist_and_never_move_back(self, store: EventStore) -> None:
        assert await store.get_checkpoint("coder") == 0
        await store.save_checkpoint("coder", 7)
        await store.save_checkpoint("coder", 3)
        assert await store.get_checkpoint("coder") == 7
        assert await store.get_checkpoint("tester") == 0

    async def test_checkpoint_saved_with_events_in_one_transaction(self, store: EventStore) -> None:
        [cause] = await store.append("task-a", [initiated("a")])
        await store.append(
            "task-a", [dispatched("a", "1", cause.id)], checkpoint=("planner", cause.position)
        )
        assert await store.get_checkpoint("planner") == cause.position
        with pytest.raises(DuplicateEventError):
            await store.append(
                "task-a", [dispatched("a", "1", cause.id)], checkpoint=("other", cause.position)
            )
        assert await store.get_checkpoint("other") == 0

    async def test_subscribe_resumes_after_saved_checkpoint(self, store: EventStore) -> None:
        for i in range(3):
            await store.append(f"task-{i}", [initiated(str(i))])
        stop = asyncio.Event()
        seen: list[str] = []
        async for event in store.subscribe("s", stop=stop):
            seen.append(event.stream_id)
            await store.save_checkpoint("s", event.position)
            if len(seen) == 2:
                break
        await store.append("task-3", [initiated("3")])
        async for event in store.subscribe("s", stop=stop):
            seen.append(event.stream_id)
            if len(seen) == 4:
                break
        assert seen == ["task-0", "task-1", "task-2", "task-3"]

    async def test_subscriber_wakes_for_new_events(self, store: EventStore) -> None:
        stop = asyncio.Event()

        async def first_two() -> list[str]:
            got = []
            async for event in store.subscribe("live", stop=stop):
                got.append(event.stream_id)
                if len(got) == 2:
                    return got
            return got

        reader = asyncio.create_task(first_two())
        await asyncio.sleep(0.05)
        await store.append("task-x", [initiated("x")])
        await store.append("task-y", [initiated("y")])
        assert await asyncio.wait_for(reader, 5) == ["task-x", "task-y"]

    async def test_tasks_projection_follows_the_log_and_rebuilds(self, store: EventStore) -> None:
        await store.append("task-a", [initiated("a", "todo cli")])
        [b] = await store.append("task-b", [initiated("b")])
        results = NewEvent(
            stream_id="task-b",
            data=TestResults(commit="c", passed=1, failed=2, failing=("t::x",)),
            correlation_id="b",
            causation_id=b.id,
            actor="tester",
        )
        await store.append("task-b", [results])
        await store.append(
            "task-a",
            [NewEvent(stream_id="task-a", data=TaskCancelled(), correlation_id="a", actor="user")],
        )
        rows = {row.id: row for row in await store.tasks()}
        assert rows["a"].status == "cancelled"
        assert rows["a"].request == "todo cli"
        assert (rows["b"].status, rows["b"].current_phase) == ("running", "fixer")
        agent = await store.agent_events("b")
        assert [(r.actor, r.event_type) for r in agent] == [
            ("user", "task.initiated"),
            ("tester", "test.results"),
        ]
        # a late agent result does not reopen a cancelled task; every event is an agent event
        late = NewEvent(
            stream_id="task-a",
            data=TestResults(commit="c", passed=1, failed=0),
            correlation_id="a",
            actor="tester",
        )
        stopped = NewEvent(
            stream_id="task-a", data=PreviewStopped(pid=4), correlation_id="a", actor="deployer"
        )
        await store.append("task-a", [late, stopped])
        row = await store.task("a")
        assert row is not None
        assert row.status == "cancelled"
        assert [r.event_type for r in await store.agent_events("a")][-2:] == [
            "test.results",
            "preview.stopped",
        ]
        before = (await store.tasks(), await store.agent_events())
        await store.rebuild_projections()
        assert (await store.tasks(), await store.agent_events()) == before
        assert await store.task("missing") is None

    async def test_append_batch_is_all_or_nothing_across_streams(self, store: EventStore) -> None:
        [cause] = await store.append("task-a", [initiated("a")])
        ok = [
            AppendRequest("task-a", (dispatched("a", "1", cause.id),)),
            AppendRequest(
                "change-x", (initiated("x").model_copy(update={"stream_id": "change-x"}),)
            ),
        ]
        recorded = await store.append_batch(ok)
        assert [len(r) for r in recorded] == [1, 1]
        bad = [
            AppendRequest(
                "change-y", (initiated("y").model_copy(update={"stream_id": "change-y"}),)
            ),
            AppendRequest("task-a", (dispatched("a", "1", cause.id),)),  # duplicate effect
        ]
        with pytest.raises(DuplicateEventError):
            await store.append_batch(bad)
        assert await store.read_stream("change-y") == []
