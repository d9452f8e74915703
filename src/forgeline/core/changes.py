"""The change tracker (note 000's CTRM), pure.

Every code change a stage makes is a stream ``change-<id>`` that goes
pending -> in_progress -> completed | failed, carrying the sha256 of the committed diff
and the commit id, or the error log.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from forgeline.core.events import (
    ChangeCompleted,
    ChangeFailed,
    ChangePending,
    ChangeStarted,
    Event,
    EventData,
    Frozen,
    NewEvent,
    change_stream,
)

ChangeStatus = Literal["new", "pending", "in_progress", "completed", "failed"]


class ChangeState(Frozen):
    change_id: str
    status: ChangeStatus = "new"
    task_id: str | None = None
    stage: str | None = None
    description: str = ""
    commit: str | None = None
    diff_sha256: str | None = None
    files: tuple[str, ...] = ()
    error_log: str | None = None
    version: int = 0


def evolve(state: ChangeState, event: Event) -> ChangeState:
    data = event.data
    update: dict[str, object] = {"version": event.version}
    match data:
        case ChangePending():
            update |= {
                "status": "pending",
                "task_id": data.task_id,
                "stage": data.stage,
                "description": data.description,
            }
        case ChangeStarted():
            update["status"] = "in_progress"
        case ChangeCompleted():
            update |= {
                "status": "completed",
                "commit": data.commit,
                "diff_sha256": data.diff_sha256,
                "files": data.files,
            }
        case ChangeFailed():
            update |= {"status": "failed", "error_log": data.error_log}
        case _:
            pass
    return state.model_copy(update=update)


def fold(change_id: str, events: Iterable[Event]) -> ChangeState:
    state = ChangeState(change_id=change_id)
    for event in events:
        state = evolve(state, event)
    return state


_NEXT: dict[str, tuple[ChangeStatus, ...]] = {
    "change.pending": ("new",),
    "change.in_progress": ("pending",),
    "change.completed": ("in_progress",),
    "change.failed": ("pending", "in_progress"),
}


class ChangeTransitionError(ValueError):
    pass


def decide(
    state: ChangeState,
    data: EventData,
    *,
    correlation_id: str,
    causation_id: str | None,
    actor: str,
    at: datetime,
) -> list[NewEvent]:
    """Record the next step of a change; only the lifecycle's own order is allowed."""
    if not isinstance(data, ChangePending | ChangeStarted | ChangeCompleted | ChangeFailed):
        raise ChangeTransitionError(f"{data.type} is not a change event")
    if state.status not in _NEXT[data.type]:
        raise ChangeTransitionError(
            f"change {state.change_id} is {state.status}; {data.type} is not allowed now"
        )
    return [
        NewEvent(
            stream_id=change_stream(state.change_id),
            data=data,
            correlation_id=correlation_id,
            causation_id=causation_id,
            actor=actor,
            created_at=at,
        )
    ]
