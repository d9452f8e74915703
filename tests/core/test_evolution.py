"""The daemon's pure decisions: the ranking rule, each guardrail, budgets, RSITask
validation and the change tracker's lifecycle."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from forgeline.core import rsi
from forgeline.core.events import (
    Budget,
    BudgetApproved,
    ChangeMerged,
    ClarificationAnswered,
    ClarificationRequested,
    CTRMUpdate,
    Event,
    EventData,
    NewEvent,
    PatchDefinition,
    RSITask,
    RSITaskCreated,
    TaskAwaitingApproval,
    TaskCompleted,
    TaskFailed,
)
from forgeline.core.evolution import Limits, Signal, plan_cycle, rank, shared_budget
from forgeline.core.rsi import ChangeTransitionError, RSIChange
from tests.core.given import AT


def signal(kind: str, module: str, priority: int, fingerprint: str | None = None) -> Signal:
    return Signal(
        kind=kind,  # type: ignore[arg-type]
        fingerprint=fingerprint or f"{kind}:{module}",
        target_module=module,
        summary=kind,
        request=f"do {kind}",
        priority=priority,
    )


def task(change_id: str = "RSI-1.1", module: str = "a.py", **values: object) -> RSITask:
    return RSITask.model_validate(
        {
            "change_id": change_id,
            "target_module": module,
            "patch_definition": {"kind": "lint", "summary": "s", "request": "r"},
            **values,
        }
    )


def change(
    change_id: str, module: str, status: str, *, ago: timedelta = timedelta(days=2)
) -> RSIChange:
    return RSIChange(
        change_id=change_id,
        status=status,  # type: ignore[arg-type]
        task=task(change_id, module),
        fingerprint=f"lint:{module}",
        created_at=AT - ago,
    )


def test_the_ranking_rule_puts_tests_then_goals_then_types_lint_todos_coverage() -> None:
    signals = [
        signal("coverage", "c.py", 2),
        signal("todo", "t.py", 3),
        signal("lint", "l.py", 5),
        signal("type", "y.py", 6),
        signal("goal", ".", 8),
        signal("test", "x.py", 10),
        signal("goal", "g.py", 10),  # a person's 10 comes after a failing test's 10
        signal("lint", "a.py", 5),  # equal rank: by fingerprint
    ]
    assert [s.fingerprint for s in rank(signals)] == [
        "test:x.py",
        "goal:g.py",
        "goal:.",
        "type:y.py",
        "lint:a.py",
        "lint:l.py",
        "todo:t.py",
        "coverage:c.py",
    ]


@pytest.mark.parametrize(
    ("changes", "limits", "reason"),
    [
        ([change("RSI-1.1", "a.py", "completed")], Limits(), "already answered by RSI-1.1"),
        ([change("RSI-1.1", "a.py", "paused")], Limits(), "already answered by RSI-1.1"),
        (
            [change("RSI-1.1", "a.py", "failed"), change("RSI-2.1", "a.py", "failed")],
            Limits(),
            "its last 2 changes failed",
        ),
        (
            [change("RSI-1.1", "a.py", "merged", ago=timedelta(minutes=5))],
            Limits(),
            "a.py is cooling down after RSI-1.1",
        ),
        (
            [change("RSI-1.1", "b.py", "in_progress"), change("RSI-1.2", "c.py", "pending")],
            Limits(),
            "2 changes in flight",
        ),
        (
            [change("RSI-1.1", "b.py", "failed", ago=timedelta(hours=3))],
            Limits(max_per_day=1),
            "1 changes in the last 24 hours",
        ),
        ([], Limits(max_changes=0), "at most 0 changes per cycle"),
    ],
)
def test_each_guardrail_holds_a_signal_back_with_its_reason(
    changes: list[RSIChange], limits: Limits, reason: str
) -> None:
    plan = plan_cycle([signal("lint", "a.py", 5)], changes, limits, AT)
    assert plan.chosen == ()
    assert [s.reason for s in plan.skipped] == [reason]


def test_one_open_change_per_module_and_merged_or_failed_changes_free_it() -> None:
    busy = change("RSI-1.1", "a.py", "in_progress")
    other = signal("todo", "a.py", 3, "todo:a.py:1")
    plan = plan_cycle([other], [busy], Limits(), AT)
    assert [s.reason for s in plan.skipped] == ["a.py has an open change (RSI-1.1)"]
    # Two signals on one module in one cycle: the better one only.
    plan = plan_cycle([other, signal("lint", "a.py", 5)], [], Limits(), AT)
    assert [s.fingerprint for s in plan.chosen] == ["lint:a.py"]
    assert [s.reason for s in plan.skipped] == ["a.py has an open change"]
    # A failed change long ago: the signal is tried again.
    plan = plan_cycle([other], [change("RSI-1.1", "a.py", "failed")], Limits(), AT)
    assert [s.fingerprint for s in plan.chosen] == ["todo:a.py:1"]


def test_a_cycle_takes_the_best_signals_up_to_its_limit() -> None:
    signals = [signal("lint", f"{n}.py", 5) for n in "abc"] + [signal("test", "t.py", 10)]
    plan = plan_cycle(signals, [], Limits(max_changes=2, max_in_flight=5), AT)
    assert [s.fingerprint for s in plan.chosen] == ["test:t.py", "lint:a.py"]
    assert [s.reason for s in plan.skipped] == ["at most 2 changes per cycle"] * 2


def test_a_cycle_budget_is_shared_out_evenly_and_otherwise_the_task_budget_applies() -> None:
    per_task = Budget(tokens=99)
    assert shared_budget(Budget(tokens=1000, usd=1.0), 4, per_task) == Budget(tokens=250, usd=0.25)
    assert shared_budget(Budget(), 4, per_task) == per_task
    assert shared_budget(Budget(usd=2.0), 0, per_task) == Budget(usd=2.0)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("priority", 11, "less than or equal to 10"),
        ("priority", 0, "greater than or equal to 1"),
        ("priority", "high", "valid integer"),
        ("target_module", "../etc/passwd", "inside the repository"),
        ("target_module", "/abs.py", "inside the repository"),
        ("target_module", ".git/hooks/pre-commit", "inside .git/"),
        ("change_id", "RSI-x", "should match pattern"),
        ("patch_definition", {"kind": "lint", "summary": "s", "request": ""}, "at least 1"),
        ("patch_definition", {"kind": "deploy", "summary": "s", "request": "r"}, "kind"),
    ],
)
def test_an_invalid_rsi_task_is_refused_with_its_reason(
    field: str, value: object, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        task(**{field: value})


def test_a_valid_rsi_task_round_trips_as_json() -> None:
    made = task(priority=7, module=".")
    assert RSITask.model_validate(json.loads(made.model_dump_json())) == made
    assert made.patch_definition == PatchDefinition(kind="lint", summary="s", request="r")


# ------------------------------------------------------------------ the tracker


def record(
    events: list[Event], state: RSIChange, data: EventData, cause: str | None = None
) -> RSIChange:
    [new] = rsi.decide(state, data, correlation_id="c", causation_id=cause, actor="ctrm", at=AT)
    events.append(Event(**new.model_dump(), version=len(events) + 1, position=len(events) + 1))
    return rsi.fold(state.change_id, events)


def task_event(data: EventData, task_id: str = "t1") -> Event:
    new = NewEvent(stream_id=f"task-{task_id}", data=data, correlation_id=task_id, actor="x")
    return Event(**new.model_dump(), version=1, position=1)


def created(change_id: str = "RSI-1.1") -> RSITaskCreated:
    return RSITaskCreated(
        task=task(change_id),
        cycle=1,
        repository="proj",
        branch="main",
        base_commit="b" * 40,
        fingerprint="lint:a.py",
    )


def test_a_change_goes_pending_in_progress_completed_merged() -> None:
    events: list[Event] = []
    state = record(events, RSIChange(change_id="RSI-1.1"), created())
    assert (state.status, state.branch, state.target_module) == ("pending", "main", "a.py")
    state = record(events, state, CTRMUpdate(status="in_progress", task_id="t1"))
    update = rsi.tracked(state, task_event(TaskCompleted(summary="done")))
    assert update == CTRMUpdate(status="completed", task_id="t1")
    done = update.model_copy(update={"commit": "c" * 40, "generated_hash": "f" * 64})
    state = record(events, state, done)
    assert (state.status, state.generated_hash) == ("completed", "f" * 64)
    assert events[0].stream_id == "ctrm-RSI-1.1"
    assert rsi.tracked(state, task_event(TaskCompleted(summary="again"))) is None


def test_the_tracker_follows_only_its_own_task_and_pauses_and_resumes_with_the_budget() -> None:
    events: list[Event] = []
    state = record(events, RSIChange(change_id="RSI-1.1"), created())
    state = record(events, state, CTRMUpdate(status="in_progress", task_id="t1"))
    assert rsi.tracked(state, task_event(TaskFailed(reason="x"), task_id="other")) is None
    pause = TaskAwaitingApproval(stage="coder", trigger_id="e", reason="over budget")
    update = rsi.tracked(state, task_event(pause))
    assert update is not None and update.status == "paused"
    assert update.error_log is not None and "forgeline approve t1" in update.error_log
    state = record(events, state, update)
    resumed = rsi.tracked(state, task_event(BudgetApproved(budget=Budget(), resumes=())))
    assert resumed == CTRMUpdate(status="in_progress", task_id="t1")
    state = record(events, state, resumed)
    failed = rsi.tracked(state, task_event(TaskFailed(reason="tests fail")))
    assert failed is not None and (failed.status, failed.error_log) == ("failed", "tests fail")


def test_out_of_order_steps_are_refused() -> None:
    with pytest.raises(ChangeTransitionError, match="is new"):
        rsi.decide(
            RSIChange(change_id="RSI-1.1"),
            CTRMUpdate(status="completed"),
            correlation_id="c",
            causation_id=None,
            actor="a",
            at=AT,
        )
    pending = RSIChange(change_id="RSI-1.1", status="pending")
    merged = ChangeMerged(branch="main", commit="c", approved_by="person")
    with pytest.raises(ChangeTransitionError, match=r"rsi\.change\.merged is not allowed"):
        rsi.decide(
            pending,
            merged,
            correlation_id="c",
            causation_id=None,
            actor="a",
            at=AT,
        )


def test_a_task_that_asks_a_question_pauses_its_change_until_it_is_answered() -> None:
    events: list[Event] = []
    state = record(events, RSIChange(change_id="RSI-1.1"), created())
    state = record(events, state, CTRMUpdate(status="in_progress", task_id="t1"))
    asked = ClarificationRequested(item_id="a", question="Which format?")
    update = rsi.tracked(state, task_event(asked))
    assert update is not None and update.status == "paused"
    assert update.error_log is not None and "Which format?" in update.error_log
    state = record(events, state, update)
    answered = ClarificationAnswered(item_id="a", answer="JSON")
    assert rsi.tracked(state, task_event(answered)) == CTRMUpdate(
        status="in_progress", task_id="t1"
    )
