from __future__ import annotations

import pytest

from forgeline.core.events import (
    ArchitectureProposed,
    CandidateChosen,
    ClarificationAnswered,
    CodePrOpened,
    DeployStatus,
    NodeKind,
    PlanCreated,
    PlanItem,
    PlanItemCompleted,
    ReviewDecision,
    ReviewSkipped,
    SpecCheckLabel,
    SpecDerived,
    StageFailed,
    TaskAssigned,
    TaskInitiated,
    TaskWaiting,
    TestResults,
)
from forgeline.core.task import (
    Answer,
    Cancel,
    CompactContext,
    Initialize,
    React,
    TaskState,
    decide,
    fold,
    next_stage,
)
from forgeline.errors import InvalidRequestError
from tests.core.given import AT, History


def started(max_fix: int = 3, max_review: int = 3) -> History:
    h = History()
    h.add(
        TaskInitiated(
            request="todo cli",
            repository="ws",
            branch="forgeline/t1",
            base_commit="c0",
            max_fix_rounds=max_fix,
            max_review_rounds=max_review,
        ),
        actor="user",
    )
    return h


def planned(items: tuple[PlanItem, ...], **kw: int) -> History:
    h = started(**kw)
    h.add(PlanCreated(summary="s", items=items, commit="c1"), actor="planner")
    h.add(ArchitectureProposed(summary="a", adr_path="docs/adr/0001.md", commit="c2"))
    return h


def react(h: History) -> list[str]:
    """The orchestrator's reaction to the last event, recorded; returns the new types."""
    state = fold("t1", h.events)
    out = decide(state, React(event=h.events[-1], at=AT))
    for new in out:
        h.record(new)
    return [e.type for e in out]


def state_of(h: History) -> TaskState:
    return fold("t1", h.events)


A = PlanItem(id="a", title="store module", files=("store.py",))
B = PlanItem(id="b", title="cli", depends_on=("a",), files=("cli.py",))
C = PlanItem(id="c", title="readme")


def test_initialize_records_the_request_and_rejects_an_empty_one() -> None:
    cmd = Initialize(
        task_id="t1", request="  todo cli ", repository="ws", branch="b", base_commit="c0", at=AT
    )
    [event] = decide(TaskState(task_id="t1"), cmd)
    assert event.type == "task.initiated"
    assert event.stream_id == "task-t1"
    assert event.correlation_id == "t1"
    assert isinstance(event.data, TaskInitiated)
    assert event.data.request == "todo cli"
    # deterministic: deciding twice gives the same event id (so the store dedupes)
    assert decide(TaskState(task_id="t1"), cmd)[0].id == event.id
    with pytest.raises(InvalidRequestError, match="empty"):
        decide(TaskState(task_id="t1"), cmd.model_copy(update={"request": "   "}))


def test_initialize_twice_is_refused() -> None:
    h = started()
    cmd = Initialize(
        task_id="t1", request="x", repository="ws", branch="b", base_commit="c0", at=AT
    )
    with pytest.raises(InvalidRequestError, match="already exists"):
        decide(state_of(h), cmd)


def test_stage_routing_follows_the_pipeline() -> None:
    h = started()
    assert next_stage(state_of(h), h.events[-1]) == "planner"
    h.add(PlanCreated(summary="s", items=(A,), commit="c1", complexity=4))
    assert next_stage(state_of(h), h.events[-1]) == "assigner"
    h.add(TaskWaiting(complexity=4, reason="every agent that takes complexity 4 is busy"))
    assert state_of(h).status == "waiting" and "busy" in (state_of(h).waiting or "")
    assert next_stage(state_of(h), h.events[-1]) is None
    h.add(TaskAssigned(agent="cheap", complexity=4, models={"coder": "test:cheap"}))
    state = state_of(h)
    assert (state.status, state.agent, state.waiting) == ("running", "cheap", None)
    assert state.complexity == 4 and state.models == {"coder": "test:cheap"}
    assert next_stage(state, h.events[-1]) == "architect"
    h.add(ArchitectureProposed(summary="a", adr_path="x", commit="c2"))
    assert next_stage(state_of(h), h.events[-1]) is None
    assert react(h) == ["plan.item.dispatched"]
    assert next_stage(state_of(h), h.events[-1]) == "coder"


def test_independent_items_are_dispatched_one_decision_at_a_time() -> None:
    h = planned((A, B, C))
    assert react(h) == ["plan.item.dispatched"]  # a, caused by the architecture
    assert react(h) == ["plan.item.dispatched"]  # c, caused by a's dispatch: runs beside a
    assert react(h) == []  # b waits for a
    running = {i for i, s in state_of(h).items.items() if s.status == "running"}
    assert running == {"a", "c"}
    causes = [e.causation_id for e in h.events if e.type == "plan.item.dispatched"]
    assert len(set(causes)) == 2


def test_dependents_run_after_their_dependencies_then_the_pr_opens() -> None:
    h = planned((A, B))
    react(h)
    h.add(PlanItemCompleted(item_id="a", commit="c3", files=("store.py",)), actor="coder")
    assert react(h) == ["plan.item.dispatched"]
    assert state_of(h).items["b"].status == "running"
    h.add(PlanItemCompleted(item_id="b", commit="c4", files=("cli.py",)), actor="coder")
    assert react(h) == ["code.pr.opened"]
    pr = h.events[-1].data
    assert isinstance(pr, CodePrOpened)
    assert (pr.commit, pr.files, pr.round) == ("c4", ("store.py", "cli.py"), 0)
    # a later reaction never opens the first PR twice
    assert react(h) == []


def test_clarification_pauses_until_answered_then_continues() -> None:
    q = PlanItem(id="q", title="Which storage format?", kind=NodeKind.CLARIFICATION)
    b = PlanItem(id="b", title="build", depends_on=("q",))
    h = planned((q, b))
    assert react(h) == ["clarification.requested"]
    state = state_of(h)
    assert state.status == "needs_clarification"
    assert react(h) == []  # nothing else is ready
    [answer] = decide(state, Answer(answer="JSON", at=AT))
    assert isinstance(answer.data, ClarificationAnswered)
    assert answer.data.item_id == "q"
    h.record(answer)
    assert state_of(h).status == "running"
    assert state_of(h).items["q"].answer == "JSON"
    assert react(h) == ["plan.item.dispatched"]


def test_answer_is_refused_when_nothing_is_asked() -> None:
    with pytest.raises(InvalidRequestError, match="not waiting"):
        decide(state_of(planned((A,))), Answer(answer="x", at=AT))


def pr_then_tests(h: History, ok: bool, reason: str = "plan") -> None:
    h.add(CodePrOpened(branch="b", commit="c9", reason=reason))  # type: ignore[arg-type]
    h.add(
        TestResults(commit="c9", passed=3, failed=0 if ok else 1, failing=() if ok else ("t::x",))
    )


def test_failing_tests_go_to_the_fixer_until_the_limit_then_fail() -> None:
    h = planned((A,), max_fix=1)
    pr_then_tests(h, ok=False)
    assert next_stage(state_of(h), h.events[-1]) == "fixer"
    assert react(h) == []
    pr_then_tests(h, ok=False, reason="fix")
    assert state_of(h).fix_rounds == 1
    assert next_stage(state_of(h), h.events[-1]) is None
    assert react(h) == ["task.failed"]
    state = state_of(h)
    assert state.status == "failed"
    assert state.failure is not None
    assert "t::x" in state.failure
    assert "1 fix round" in state.failure


def test_passing_tests_go_to_review_and_changes_requested_go_back_to_the_coder() -> None:
    h = planned((A,), max_review=1)
    pr_then_tests(h, ok=True)
    assert next_stage(state_of(h), h.events[-1]) == "reviewer"
    h.add(ReviewDecision(approved=False, comments=("name things",), commit="c9"))
    assert next_stage(state_of(h), h.events[-1]) == "coder"
    pr_then_tests(h, ok=True, reason="review")
    h.add(ReviewDecision(approved=False, comments=("still bad",), commit="c9"))
    assert next_stage(state_of(h), h.events[-1]) is None
    assert react(h) == ["task.failed"]
    assert "still bad" in (state_of(h).failure or "")


def test_approval_deploys_and_a_good_deploy_completes_the_task() -> None:
    h = planned((A,))
    pr_then_tests(h, ok=True)
    h.add(ReviewDecision(approved=True, commit="c9"))
    assert next_stage(state_of(h), h.events[-1]) == "deployer"
    h.add(DeployStatus(ok=True, kind="web", url="http://127.0.0.1:9"))
    assert react(h) == ["task.completed"]
    assert state_of(h).status == "completed"
    assert react(h) == []  # terminal: nothing more


def test_a_failed_deploy_or_stage_fails_the_task_with_the_reason() -> None:
    h = planned((A,))
    h.add(DeployStatus(ok=False, kind="cli", output="Traceback: boom"))
    assert react(h) == ["task.failed"]
    assert "boom" in (state_of(h).failure or "")
    h2 = planned((A,))
    h2.add(StageFailed(stage="coder", error="model output invalid after 3 attempts"))
    assert react(h2) == ["task.failed"]
    assert "coder failed: model output invalid" in (state_of(h2).failure or "")


def test_cancel_stops_every_stage() -> None:
    h = planned((A,))
    react(h)
    [cancel] = decide(state_of(h), Cancel(at=AT))
    h.record(cancel)
    state = state_of(h)
    assert state.status == "cancelled"
    assert next_stage(state, h.events[1]) is None
    assert react(h) == []
    with pytest.raises(InvalidRequestError, match="already cancelled"):
        decide(state, Cancel(at=AT))


def test_compact_context_records_a_summary() -> None:
    h = planned((A,))
    [event] = decide(state_of(h), CompactContext(summary="short", dropped_items=("turn 1",), at=AT))
    h.record(event)
    assert state_of(h).context_summary == "short"


def test_fold_is_a_replay_of_evolve() -> None:
    h = planned((A, B))
    react(h)
    again = fold("t1", list(h.events))
    assert again == state_of(h)
    assert again.version == len(h.events)


def test_the_head_is_the_newest_commit_whatever_order_items_are_recorded_in() -> None:
    # a and c run together: a commits a1 on c2, then c commits c1 on a1; c is recorded first
    h = planned((A, C))
    react(h)
    react(h)
    h.add(PlanItemCompleted(item_id="c", commit="c1", parent="a1", files=("c",)), actor="coder")
    assert state_of(h).head == "c1"
    h.add(PlanItemCompleted(item_id="a", commit="a1", parent="c2", files=("a",)), actor="coder")
    assert state_of(h).head == "c1"
    assert react(h) == ["code.pr.opened"]
    assert h.events[-1].data.commit == "c1"  # type: ignore[union-attr]


def test_a_budget_pause_waits_for_approval_and_names_every_paused_stage() -> None:
    from forgeline.core.events import Budget, TaskAwaitingApproval
    from forgeline.core.task import Approve

    h = started()
    h.add(TaskAwaitingApproval(stage="coder", trigger_id="e1", reason="over"), actor="coder")
    h.add(TaskAwaitingApproval(stage="coder", trigger_id="e2", reason="over"), actor="coder")
    state = fold("t1", h.events)
    assert state.status == "awaiting_approval"
    assert [p.trigger_id for p in state.paused] == ["e1", "e2"]

    [approved] = decide(state, Approve(budget=Budget(tokens=5000), at=AT))
    assert approved.actor == "user"
    assert [(r.stage, r.trigger_id) for r in approved.data.resumes] == [
        ("coder", "e1"),
        ("coder", "e2"),
    ]
    h.record(approved)
    state = fold("t1", h.events)
    assert (state.status, state.paused, state.budget.tokens) == ("running", (), 5000)
    with pytest.raises(InvalidRequestError, match="not waiting for approval"):
        decide(state, Approve(budget=Budget(tokens=1), at=AT))


def test_a_budget_is_crossed_by_tokens_or_dollars() -> None:
    from forgeline.core.events import Budget

    budget = Budget(tokens=1000, usd=0.5)
    assert budget.crossed_by(1000, 0.5) is None
    assert "1001 tokens" in (budget.crossed_by(1001, 0.0) or "")
    assert "$0.6000" in (budget.crossed_by(10, 0.6) or "")
    assert Budget().crossed_by(10**9, 10.0**6) is None


# ------------------------------------------------------ a request straight to the candidates


def specified(review: bool = False, **kw: int) -> History:
    """A task whose spec sends it straight to the candidates (a small tier: no review)."""
    h = started(**kw)
    check = SpecCheckLabel(
        test_id="test_spec_examples.py::test_example_1", kind="example", label="f(1) == 2"
    )
    spec = SpecDerived(
        digest="d",
        files=("f.py",),
        checks=(check,),
        test_files=("test_spec_examples.py",),
        commit="c1",
        tier="small",
        plans="multi_module",
        review=review,
    )
    h.add(spec, actor="planner")
    return h


def test_the_chosen_candidate_is_the_head_and_its_files_the_tasks() -> None:
    h = specified()
    assert next_stage(fold("t1", h.events), h.events[-1]) == "coder"
    chosen = CandidateChosen(
        digest="a", reason="r", spec_ok=True, candidates=5, commit="c2", files=("f.py",)
    )
    h.add(chosen, actor="coder")
    state = fold("t1", h.events)
    assert state.head == "c2" and state.chosen == chosen
    assert state.files == ("test_spec_examples.py", "f.py")
    assert next_stage(state, h.events[-1]) is None  # its code.pr.opened goes to the tester


def test_without_a_review_passing_tests_go_to_the_deployer() -> None:
    h = specified(review=False)
    h.add(CodePrOpened(branch="b", commit="c2", reason="selection"), actor="coder")
    h.add(TestResults(commit="c2", passed=3, failed=0), actor="tester")
    assert next_stage(fold("t1", h.events), h.events[-1]) is None  # no reviewer
    assert react(h) == ["review.skipped"]
    skipped = h.events[-1].data
    assert isinstance(skipped, ReviewSkipped) and "small tier" in skipped.reason
    # a tier that reviews keeps the reviewer, and the orchestrator does nothing
    reviewed = specified(review=True)
    reviewed.add(TestResults(commit="c2", passed=3, failed=0), actor="tester")
    assert next_stage(fold("t1", reviewed.events), reviewed.events[-1]) == "reviewer"
    assert react(reviewed) == []


def test_a_task_that_keeps_failing_a_spec_check_fails_naming_it() -> None:
    h = specified(max_fix=0)
    h.add(CodePrOpened(branch="b", commit="c2", reason="selection"), actor="coder")
    failing = ("test_spec_examples.py::test_example_1", "test_designed.py::test_x")
    h.add(TestResults(commit="c2", passed=1, failed=2, failing=failing), actor="tester")
    assert react(h) == ["task.failed"]
    reason = fold("t1", h.events).failure or ""
    assert "the spec's check 'f(1) == 2' (test_spec_examples.py::test_example_1)" in reason
    assert "test_designed.py::test_x" in reason
    assert "on branch forgeline/t1" in reason
