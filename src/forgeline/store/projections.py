"""Read models as functions of events (note 001's ``tasks`` and ``agent_events``).

A read model is registered once, in ``READ_MODELS``: the tables it owns and a pure
function from a run of events to the rows each of its statements writes. The store's one
write path (``recorder.Recorder``) applies every registered read model to each batch
inside the append transaction, and ``rebuild_projections`` replays the log through the
same functions; the SQL of each statement is in the backends' dialect tables, under the
statement's name. The mapping itself is plain data and lives only here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forgeline.core.events import Event, NewEvent, task_id_of
from forgeline.core.reactions import phase_after

# A finished task's row keeps its status (an agent finishing after a cancel does not
# reopen it): backends add ``AND status NOT IN`` this list to their updates.
FINAL_STATUSES = ("completed", "failed", "cancelled")
FINAL_STATUSES_SQL = "(" + ", ".join(f"'{status}'" for status in FINAL_STATUSES) + ")"


@dataclass(frozen=True)
class TaskUpdate:
    """What one event of a task stream does to the read models.

    Every task event gets an ``agent_events`` row; ``status``/``phase`` are None for
    events that do not move the task (a usage record, a stopped preview).
    """

    task_id: str
    status: str | None
    phase: str | None
    request: str | None
    """Set only by ``task.initiated``; the row is inserted then."""


def task_update(event: Event | NewEvent) -> TaskUpdate | None:
    task_id = task_id_of(event.stream_id)
    if task_id is None:
        return None
    data = event.data
    moved = phase_after(data)  # the reaction table's status and phase
    if moved is None:
        return TaskUpdate(task_id, None, None, None)
    status, phase = moved
    request = data.request if data.type == "task.initiated" else None
    return TaskUpdate(task_id, status, phase, request)


@dataclass
class TaskRowsChange:
    """What a sequence of events does to the read models, as one statement each:
    ``inserted`` rows (id, status, phase, request, created_at, updated_at) replace a
    task's row; ``moved`` (id, status, phase, updated_at) update a row unless its status
    is final; ``agent_events`` rows (position, task_id, actor, type, created_at)."""

    inserted: list[tuple[str, str, str, str, datetime, datetime]]
    moved: list[tuple[str, str, str, datetime]]
    agent_events: list[tuple[int, str, str, str, datetime]]


def task_rows(events: Sequence[Event]) -> TaskRowsChange:
    """The combined effect of applying ``task_update`` to ``events`` one after another
    (an insert replaces the row; an update moves it unless its status is final), with
    at most one row per task in each list, so each list can be one statement."""
    inserted: dict[str, list[Any]] = {}
    moved: dict[str, tuple[str, str, str, datetime]] = {}
    agent: list[tuple[int, str, str, str, datetime]] = []
    for event in events:
        update = task_update(event)
        if update is None:
            continue
        at = event.created_at
        agent.append((event.position, update.task_id, event.actor, event.type, at))
        task = update.task_id
        if update.request is not None:
            assert update.status is not None
            assert update.phase is not None
            inserted[task] = [task, update.status, update.phase, update.request, at, at]
            moved.pop(task, None)  # replaced: earlier moves no longer count
        elif update.status is not None:
            assert update.phase is not None
            if (row := inserted.get(task)) is not None:
                if row[1] not in FINAL_STATUSES:
                    row[1], row[2], row[5] = update.status, update.phase, at
            elif (move := moved.get(task)) is None or move[1] not in FINAL_STATUSES:
                moved[task] = (task, update.status, update.phase, at)
    return TaskRowsChange(
        [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in inserted.values()],
        list(moved.values()),
        agent,
    )


def task_writes(events: Sequence[Event]) -> Mapping[str, list[tuple[Any, ...]]]:
    """The ``tasks`` and ``agent_events`` rows of ``events``, by dialect statement name."""
    change = task_rows(events)
    return {
        "insert_tasks": list(change.inserted),
        "move_tasks": list(change.moved),
        "insert_agent_events": list(change.agent_events),
    }


@dataclass(frozen=True)
class ReadModel:
    """A read model: the tables it owns (emptied before a rebuild) and ``writes``, a pure
    function from events, in log order, to the rows of each of its statements. Applying it
    to a run of events at once must leave what applying it to each event in turn does."""

    tables: tuple[str, ...]
    writes: Callable[[Sequence[Event]], Mapping[str, list[tuple[Any, ...]]]]


READ_MODELS: tuple[ReadModel, ...] = (ReadModel(("tasks", "agent_events"), task_writes),)
