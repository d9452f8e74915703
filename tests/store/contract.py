"""Every behaviour of the EventStore contract, once. Backends subclass ``StoreContract``
and provide the fixtures:

- ``store``: an open, empty store, which the tests write through;
- ``other``: a second store opened on the same database (its own connections, its own
  caches): every read-back goes through it, so what is compared with what was written is
  what the database holds, not what the writer remembers;
- ``absent``: a store, not opened, built with ``create=False`` for a place with no store;
- ``rewrite_data``: ``await rewrite_data(event_id, json_text)`` replaces a stored
  payload behind the store's back (as a damaged row or another program would).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from forgeline.core.events import (
    NewEvent,
    PlanItemDispatched,
    PreviewStopped,
    TaskCancelled,
    TaskInitiated,
    TestResults,
)
from forgeline.errors import ConcurrencyError, DuplicateEventError, StoreError
from forgeline.store.base import AppendRequest, EventStore

RewriteData = Callable[[str, str], Awaitable[None]]


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
    async def test_append_assigns_versions_and_positions(
        self, store: EventStore, other: EventStore
    ) -> None:
        a = await store.append("task-a", [initiated("a"), dispatched("a", "1")], expected_version=0)
        b = await store.append("task-b", [initiated("b")], expected_version=0)
        assert [e.version for e in a] == [1, 2]
        assert [e.version for e in b] == [1]
        assert a[0].position < a[1].position < b[0].position
        assert await other.read_all() == [*a, *b]

    async def test_read_stream_round_trips_typed_payloads(
        self, store: EventStore, other: EventStore
    ) -> None:
        results = NewEvent(
            stream_id="task-a",
            data=TestResults(
                commit="c1",
                passed=3,
                failed=1,
                failing=("t::x", "t::\u00e9"),
                output="line\n\x00\ttab \u2603",
            ),
            correlation_id="a",
            causation_id="cause-1",
            actor="tester",
            created_at=datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC),
        )
        written = await store.append(
            "task-a", [initiated("a", "todo cli"), dispatched("a", "x"), results]
        )
        read = await other.read_stream("task-a")
        assert read == written
        for got, sent in zip(read, written, strict=True):
            assert got.model_dump() == sent.model_dump()
        first, last = read[0].data, read[2]
        assert isinstance(first, TaskInitiated)
        assert first.request == "todo cli"
        assert isinstance(last.data, TestResults)
        assert last.data.output == "line\n\x00\ttab \u2603"
        assert last.created_at == datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
        assert (last.causation_id, last.actor, last.correlation_id) == ("cause-1", "tester", "a")
        assert await other.read_stream("task-a", after_version=1) == written[1:]
        assert await other.stream_version("task-a") == 3
        assert await other.stream_version("task-none") == 0
        assert await other.read_stream("task-none") == []

    async def test_stale_expected_version_is_rejected_and_writes_nothing(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.append("task-a", [initiated("a")], expected_version=0)
        with pytest.raises(ConcurrencyError) as info:
            await store.append(
                "task-a", [dispatched("a", "1"), dispatched("a", "2")], expected_version=0
            )
        assert info.value.actual == 1
        assert "expected 0" in str(info.value)
        assert len(await other.read_stream("task-a")) == 1

    async def test_second_output_for_same_cause_is_rejected(
        self, store: EventStore, other: EventStore
    ) -> None:
        [cause] = await store.append("task-a", [initiated("a")])
        await store.append("task-a", [dispatched("a", "1", cause.id)])
        with pytest.raises(DuplicateEventError):
            await store.append("task-a", [dispatched("a", "1", cause.id)])
        # a different type with the same cause is a different effect
        other_effect = NewEvent(
            stream_id="task-a",
            data=TaskCancelled(),
            correlation_id="a",
            causation_id=cause.id,
            actor="user",
        )
        await store.append("task-a", [other_effect])
        assert [e.type for e in await other.read_stream("task-a")] == [
            "task.initiated",
            "plan.item.dispatched",
            "task.cancelled",
        ]

    async def test_the_same_event_recorded_twice_is_a_duplicate(
        self, store: EventStore, other: EventStore
    ) -> None:
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
        assert len(await other.read_stream("task-a")) == 3

    async def test_one_failing_request_does_not_fail_its_batch_neighbours(
        self, store: EventStore, other: EventStore
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
        assert len(await other.read_all(after=0)) == 21

    async def test_concurrent_appends_to_one_stream_keep_versions_dense(
        self, store: EventStore, other: EventStore
    ) -> None:
        await asyncio.gather(
            *(store.append("task-a", [dispatched("a", str(i))]) for i in range(50))
        )
        events = await other.read_stream("task-a")
        assert [e.version for e in events] == list(range(1, 51))

    async def test_read_all_after_position_in_global_order(
        self, store: EventStore, other: EventStore
    ) -> None:
        written = [(await store.append(f"task-{i}", [initiated(str(i))]))[0] for i in range(5)]
        everything = await other.read_all(after=0)
        assert everything == written
        assert [e.position for e in everything] == sorted(e.position for e in everything)
        tail = await other.read_all(after=everything[1].position, limit=2)
        assert tail == everything[2:4]

    async def test_checkpoints_persist_and_never_move_back(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert await other.get_checkpoint("coder") == 0
        await store.save_checkpoint("coder", 7)
        await store.save_checkpoint("coder", 3)
        assert await other.get_checkpoint("coder") == 7
        assert await other.get_checkpoint("tester") == 0

    async def test_checkpoint_saved_with_events_in_one_transaction(
        self, store: EventStore, other: EventStore
    ) -> None:
        [cause] = await store.append("task-a", [initiated("a")])
        await store.append(
            "task-a", [dispatched("a", "1", cause.id)], checkpoint=("planner", cause.position)
        )
        assert await other.get_checkpoint("planner") == cause.position
        with pytest.raises(DuplicateEventError):
            await store.append(
                "task-a", [dispatched("a", "1", cause.id)], checkpoint=("other", cause.position)
            )
        assert await other.get_checkpoint("other") == 0

    async def test_subscribe_resumes_after_saved_checkpoint(
        self, store: EventStore, other: EventStore
    ) -> None:
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
        # another process resumes from the checkpoint this one saved
        async for event in other.subscribe("s", stop=stop):
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

    async def test_tasks_projection_follows_the_log_and_rebuilds(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.append("task-a", [initiated("a", "todo cli")])
        [b] = await store.append("task-b", [initiated("b")])
        results = NewEvent(
            stream_id="task-b",
            data=TestResults(commit="c", passed=1, failed=2, failing=("t::x",)),
            correlation_id="b",
            causation_id=b.id,
            actor="tester",
        )
        [recorded] = await store.append("task-b", [results])
        await store.append(
            "task-a",
            [NewEvent(stream_id="task-a", data=TaskCancelled(), correlation_id="a", actor="user")],
        )
        rows = {row.id: row for row in await other.tasks()}
        assert rows["a"].status == "cancelled"
        assert rows["a"].request == "todo cli"
        assert (rows["b"].status, rows["b"].current_phase) == ("running", "fixer")
        assert rows["b"].created_at == b.created_at
        assert rows["b"].updated_at == recorded.created_at
        agent = await other.agent_events("b")
        assert [(r.actor, r.event_type, r.position) for r in agent] == [
            ("user", "task.initiated", b.position),
            ("tester", "test.results", recorded.position),
        ]
        assert agent[1].created_at == recorded.created_at
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
        row = await other.task("a")
        assert row is not None
        assert row.status == "cancelled"
        assert [r.event_type for r in await other.agent_events("a")][-2:] == [
            "test.results",
            "preview.stopped",
        ]
        before = (await other.tasks(), await other.agent_events())
        await store.rebuild_projections()
        assert (await other.tasks(), await other.agent_events()) == before
        assert await other.task("missing") is None

    async def test_append_batch_is_all_or_nothing_across_streams(
        self, store: EventStore, other: EventStore
    ) -> None:
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
        assert await other.read_stream("change-y") == []
        assert await other.read_stream("change-x") == recorded[1]

    async def test_an_unreadable_event_is_named_and_the_rest_stays_readable(
        self,
        store: EventStore,
        other: EventStore,
        rewrite_data: RewriteData,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        a = await store.append("task-a", [initiated("a"), dispatched("a", "1")])
        b = await store.append("task-b", [initiated("b")])
        await rewrite_data(a[1].id, '{"type": "plan.item.dispatched", "item": 3}')
        with pytest.raises(StoreError) as info:
            await other.read_stream("task-a")
        message = str(info.value)
        for part in (a[1].id, "'task-a'", "version 2", f"position {a[1].position}", "item_id"):
            assert part in message
        assert "Traceback" not in message
        # the other streams and the log's pages stay readable; the bad row is named once
        assert await other.read_stream("task-b") == b
        with caplog.at_level(logging.WARNING):
            assert await other.read_all() == [a[0], *b]
            assert await other.read_all(after=a[0].position) == b
        assert sum(a[1].id in r.getMessage() for r in caplog.records) == 1

    async def test_opening_without_create_where_no_store_is_refused(
        self, absent: EventStore
    ) -> None:
        for _ in range(2):  # and the first refusal created nothing
            with pytest.raises(StoreError) as info:
                await absent.open()
            assert f"no forgeline store at {absent.location}" in str(info.value)
            assert "forgeline run" in str(info.value)
