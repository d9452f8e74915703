from __future__ import annotations

import pytest

from forgeline.core.changes import ChangeState, ChangeTransitionError, decide, fold
from forgeline.core.events import (
    ChangeCompleted,
    ChangeFailed,
    ChangePending,
    ChangeStarted,
    Event,
    EventData,
)
from tests.core.given import AT


def step(events: list[Event], state: ChangeState, data: EventData) -> ChangeState:
    [new] = decide(state, data, correlation_id="t1", causation_id=None, actor="coder", at=AT)
    events.append(Event(**new.model_dump(), version=len(events) + 1, position=len(events) + 1))
    return fold(state.change_id, events)


def test_a_change_goes_pending_in_progress_completed_with_its_hash() -> None:
    events: list[Event] = []
    state = ChangeState(change_id="ch1")
    state = step(events, state, ChangePending(task_id="t1", stage="coder", description="store"))
    assert state.status == "pending"
    state = step(events, state, ChangeStarted())
    state = step(
        events, state, ChangeCompleted(commit="abc", diff_sha256="f" * 64, files=("a.py",))
    )
    assert (state.status, state.commit, state.diff_sha256) == ("completed", "abc", "f" * 64)
    assert events[0].stream_id == "change-ch1"


def test_a_failed_change_keeps_its_error_log() -> None:
    events: list[Event] = []
    state = step(
        events,
        ChangeState(change_id="c"),
        ChangePending(task_id="t", stage="fixer", description="d"),
    )
    state = step(events, state, ChangeFailed(error_log="patch does not apply"))
    assert (state.status, state.error_log) == ("failed", "patch does not apply")


def test_out_of_order_steps_are_refused() -> None:
    with pytest.raises(ChangeTransitionError, match="is new"):
        decide(
            ChangeState(change_id="c"),
            ChangeStarted(),
            correlation_id="t",
            causation_id=None,
            actor="a",
            at=AT,
        )
    done = ChangeState(change_id="c", status="completed")
    with pytest.raises(ChangeTransitionError):
        decide(
            done,
            ChangeFailed(error_log="x"),
            correlation_id="t",
            causation_id=None,
            actor="a",
            at=AT,
        )
