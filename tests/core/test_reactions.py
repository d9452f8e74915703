"""The reaction table: every role's interests, routing, the orchestrator's reactions and
the read model's phases come from it, and ``decide`` never reacts beyond it."""

from __future__ import annotations

import typing

import pytest

from forgeline.core import task
from forgeline.core.events import (
    ArchitectureProposed,
    BudgetApproved,
    CandidateChosen,
    ClarificationAnswered,
    ClarificationRequested,
    CodePrOpened,
    DeployStatus,
    EventData,
    PlanCreated,
    PlanItem,
    PlanItemCompleted,
    PlanItemDispatched,
    Resume,
    ReviewDecision,
    ReviewSkipped,
    SpecDerived,
    StageFailed,
    TaskAssigned,
    TaskAwaitingApproval,
    TaskInitiated,
    TaskWaiting,
    TestResults,
)
from forgeline.core.reactions import (
    INTERESTS,
    ORCHESTRATOR,
    REACTIONS,
    STAGES,
    orchestrator_reacts,
    phase_after,
    planned,
    reacting_stages,
    routed_stage,
)
from forgeline.core.task import fold
from tests.core.given import History

PASSED = TestResults(commit="c", passed=2, failed=0)
FAILED = TestResults(commit="c", passed=1, failed=1)
APPROVED = ReviewDecision(approved=True, commit="c")
REJECTED = ReviewDecision(approved=False, commit="c", comments=("no",))
DIRECT = SpecDerived(digest="d", files=("todo.py",), plans="multi_module")
PLANNED = SpecDerived(digest="d", files=("todo.py",), plans="always")
MET = CandidateChosen(digest="a", reason="passes", spec_ok=True, candidates=5)
MISSED = CandidateChosen(digest="a", reason="closest", spec_ok=False, candidates=5)


@pytest.mark.parametrize(
    ("spec", "route"),
    [
        ({}, "direct"),
        ({"files": ()}, "direct"),
        ({"plans": "always"}, "plan"),
        ({"files": ("todo.py", "store.py")}, "plan"),
        ({"existing_code": True}, "plan"),
    ],
)
def test_the_route_is_a_rule_of_the_table(spec: dict[str, object], route: str) -> None:
    """One module, class, command line or service in a new repository goes straight to
    the candidates; several modules, code already there, or a tier that always plans go
    to the planner."""
    data = DIRECT.model_copy(update=spec)
    assert planned(data) is (route == "plan")
    assert routed_stage(data) == ("planner" if route == "plan" else "coder")


def test_every_row_names_a_recorded_event_type() -> None:
    union = typing.get_args(typing.get_args(EventData)[0])
    types = {model.model_fields["type"].default for model in union}
    assert {row.type for row in REACTIONS} <= types


@pytest.mark.parametrize(
    ("data", "stage", "orchestrator", "moved"),
    [
        (TaskInitiated(request="r", repository="ws", branch="b", base_commit="c"), "planner",
         False, ("running", "planner")),
        (PlanCreated(summary="s", items=(), commit="c"), "assigner", False,
         ("running", "assigner")),
        (TaskAssigned(agent="a", complexity=3), "architect", False, ("running", "architect")),
        (TaskWaiting(complexity=9, reason="busy"), None, False, ("waiting", "assigner")),
        (PlanItemDispatched(item_id="a"), "coder", True, ("running", "coder")),
        (CodePrOpened(branch="b", commit="c"), "tester", False, ("running", "tester")),
        (PASSED, "reviewer", True, ("running", "reviewer")),
        (DIRECT, "coder", False, ("running", "coder")),
        (PLANNED, "planner", False, ("running", "planner")),
        (MISSED, "planner", False, ("running", "planner")),
        (MET, None, False, None),
        (ReviewSkipped(commit="c", reason="small"), "deployer", False, ("running", "deployer")),
        (FAILED, "fixer", True, ("running", "fixer")),
        (APPROVED, "deployer", False, ("running", "deployer")),
        (REJECTED, "coder", True, ("running", "coder")),
        (DeployStatus(ok=True, kind="cli"), None, True, ("running", "deployer")),
        (StageFailed(stage="coder", error="x"), None, True, None),
        (ClarificationRequested(item_id="q", question="?"), None, True,
         ("needs_clarification", "coder")),
    ],
)  # fmt: skip
def test_the_table_says_who_acts_and_where_the_task_is(
    data: EventData, stage: str | None, orchestrator: bool, moved: tuple[str, str] | None
) -> None:
    assert routed_stage(data) == stage
    assert reacting_stages(data) == ((stage,) if stage else ())
    assert orchestrator_reacts(data) is orchestrator
    assert phase_after(data) == moved
    for role in (ORCHESTRATOR, *STAGES):
        acts = role == stage or (role == ORCHESTRATOR and orchestrator)
        if acts:
            assert data.type in INTERESTS[role]


def test_the_budget_pause_is_rows_of_the_table() -> None:
    pause = TaskAwaitingApproval(stage="architect", trigger_id="e1", reason="budget")
    assert phase_after(pause) == ("awaiting_approval", "architect")
    assert reacting_stages(pause) == () and not orchestrator_reacts(pause)
    approval = BudgetApproved(
        budget={"tokens": 9}, resumes=(Resume(stage="architect", trigger_id="e1"),)
    )
    assert reacting_stages(approval) == ("architect",)  # only the paused stage
    assert routed_stage(approval) is None
    assert phase_after(approval) == ("running", "architect")
    # the stages that call a model look at approvals; the tester and deployer do not
    assert {r for r in STAGES if "budget.approved" in INTERESTS[r]} == {
        "planner", "architect", "coder", "fixer", "reviewer"
    }  # fmt: skip


def test_decide_reacts_only_to_what_the_table_gives_the_orchestrator() -> None:
    """``_react`` (what ``decide`` records) over the states of a run with a failing and a
    rejected round, at the limits and below: it never returns events for an event the
    table does not give the orchestrator."""
    a = PlanItem(id="a", title="a", files=("a.py",))
    q = PlanItem(id="q", title="q?", kind="clarification")
    h = History()
    h.add(TaskInitiated(request="r", repository="ws", branch="b", base_commit="c0"), "user")
    h.add(PlanCreated(summary="s", items=(a, q), commit="c1"), "planner")
    h.add(ArchitectureProposed(summary="s", adr_path="x", commit="c2"), "architect")
    h.add(PlanItemDispatched(item_id="a"), ORCHESTRATOR)
    h.add(ClarificationRequested(item_id="q", question="q?"), ORCHESTRATOR)
    h.add(ClarificationAnswered(item_id="q", answer="yes"), "user")
    h.add(PlanItemCompleted(item_id="a", commit="c3"), "coder")
    h.add(CodePrOpened(branch="b", commit="c3"), ORCHESTRATOR)
    for data in (FAILED, PASSED, REJECTED, APPROVED, DeployStatus(ok=False, kind="cli")):
        h.add(data, "agent")
    h.add(StageFailed(stage="fixer", error="x"), "fixer")
    reacted = set()
    for n in range(1, len(h.events) + 1):
        state = fold("t1", h.events[:n])
        for limits in ({}, {"fix_rounds": 5, "review_rounds": 5}):
            running = state.model_copy(update={"status": "running", **limits})
            for event in h.events:
                if task._react(running, event):
                    assert orchestrator_reacts(event.data), event.type
                    reacted.add(event.type)
    assert {"test.results", "review.decision", "deploy.status", "stage.failed"} <= reacted
