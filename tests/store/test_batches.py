"""Batches as the group commit writes them, on both backends: one stream in several
groups of one batch, an expected version without events, checkpoints beside events, and a
failure in a batch (a batch is written whole first, then group by group). Everything is
read back through a second store on the same database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from forgeline.core.events import NewEvent, PreviewStopped, TaskCancelled, TestResults
from forgeline.errors import ConcurrencyError, DuplicateEventError
from forgeline.store.base import AppendRequest, EventStore
from tests.store.conftest import Backend
from tests.store.contract import dispatched, initiated


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    async with backend.store() as s:
        yield s


@pytest.fixture
async def other(store: EventStore, backend: Backend) -> AsyncIterator[EventStore]:
    """A second store on the same database, which every read-back goes through."""
    async with backend.store() as s:
        yield s


async def test_one_stream_in_several_groups_of_a_batch(
    store: EventStore, other: EventStore
) -> None:
    await store.append("task-a", [initiated("a")])
    results = await asyncio.gather(
        store.append_batch(
            [
                AppendRequest("task-a", [dispatched("a", "x"), dispatched("a", "y")], 1),
                AppendRequest("task-b", [initiated("b")], 0, checkpoint=("w", 1)),
            ]
        ),
        store.append("task-a", [dispatched("a", "z")]),
        store.append("task-a", [], expected_version=4),
        store.save_checkpoint("v", 2),
        store.append("task-b", [dispatched("b", "q")], expected_version=1),
    )
    a = await other.read_stream("task-a")
    assert [e.version for e in a] == [1, 2, 3, 4]
    assert [e.data.item_id for e in a[1:]] == ["x", "y", "z"]  # type: ignore[union-attr]
    log = await other.read_all(after=0)
    assert [e.position for e in log] == sorted(e.position for e in log)
    assert [(e.stream_id, e.version) for e in log] == [
        ("task-a", 1),
        ("task-a", 2),
        ("task-a", 3),
        ("task-b", 1),
        ("task-a", 4),
        ("task-b", 2),
    ]
    assert results[0][0] == a[1:3] and results[1] == a[3:] and results[2] == []
    assert (await other.get_checkpoint("w"), await other.get_checkpoint("v")) == (1, 2)
    assert [r.id for r in await other.tasks()] == ["a", "b"]
    assert len(await other.agent_events()) == 6


async def test_an_expected_version_without_events_is_checked(
    store: EventStore, other: EventStore
) -> None:
    await store.append("task-a", [initiated("a")])
    results = await asyncio.gather(
        store.append("task-a", [], expected_version=0),
        store.append("task-n", [initiated("n")], expected_version=0),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConcurrencyError)
    assert isinstance(results[1], list) and len(results[1]) == 1


async def test_a_failing_group_leaves_the_rest_of_its_batch_written(
    store: EventStore, other: EventStore
) -> None:
    [first] = await store.append("task-a", [initiated("a")])
    again = dispatched("a", "x", cause=first.id)
    await store.append("task-a", [again])
    results = await asyncio.gather(
        store.append("task-n", [initiated("n")]),
        store.append("task-a", [dispatched("a", "y", cause=first.id)]),  # same cause, type
        store.append("task-m", [initiated("m")], checkpoint=("w", 5)),
        store.append("task-n", [dispatched("n", "z")], expected_version=1),
        return_exceptions=True,
    )
    assert isinstance(results[1], DuplicateEventError)
    assert [type(r) for r in results] == [list, DuplicateEventError, list, list]
    assert [e.version for e in await other.read_stream("task-n")] == [1, 2]
    assert len(await other.read_stream("task-a")) == 2
    assert await other.get_checkpoint("w") == 5
    log = await other.read_all(after=0)
    assert len(log) == 5 and len(await other.agent_events()) == 5


def _event(task: str, data: object, actor: str = "coder") -> NewEvent:
    return NewEvent(
        stream_id=f"task-{task}",
        data=data,  # type: ignore[arg-type]
        correlation_id=task,
        actor=actor,
    )


async def test_read_models_of_one_batch_are_those_of_its_events_in_order(
    store: EventStore, other: EventStore
) -> None:
    """Postgres writes a batch's read models as one statement per table; the rows must be
    what applying the events one by one gives (SQLite does exactly that)."""
    await store.append("task-old", [initiated("old")])
    passed = TestResults(commit="c", passed=1, failed=0)
    failed = TestResults(commit="c", passed=0, failed=1)
    await asyncio.gather(
        store.append("task-x", [initiated("x", "x request")]),
        store.append("task-x", [_event("x", failed, "tester")]),
        store.append("task-old", [_event("old", TaskCancelled(), "user")]),
        store.append("task-x", [_event("x", passed, "tester")], checkpoint=("w", 3)),
        store.append("task-old", [_event("old", passed, "tester")]),  # late: stays cancelled
        store.append("task-y", [initiated("y")]),
        store.append("task-y", [_event("y", TaskCancelled(), "user")]),
        store.append("task-y", [_event("y", failed, "tester")]),
        store.append("task-y", [_event("y", PreviewStopped(pid=3), "deployer")]),
        store.save_checkpoint("w", 2),
    )
    rows = {r.id: (r.status, r.current_phase, r.request) for r in await other.tasks()}
    assert rows == {
        "old": ("cancelled", "done", "build a thing"),
        "x": ("running", "reviewer", "x request"),
        "y": ("cancelled", "done", "build a thing"),
    }
    x = await other.task("x")
    assert x is not None and x.updated_at > x.created_at
    assert [r.event_type for r in await other.agent_events("y")] == [
        "task.initiated",
        "task.cancelled",
        "test.results",
        "preview.stopped",
    ]
    assert len(await other.agent_events()) == 10
    assert await other.get_checkpoint("w") == 3
    before = (await other.tasks(), await other.agent_events())
    await store.rebuild_projections()
    assert (await other.tasks(), await other.agent_events()) == before
