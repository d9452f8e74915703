"""A task's lifecycle: ``decide(state, command) -> events``, ``evolve``, ``fold``.

Pure: no I/O, no clock (time arrives in the command), deterministic event ids (derived
from the causing event), so deciding twice yields the same events and the store's
idempotency guard turns a repeated decision into a no-op.

``next_stage`` says which agent acts on an event (the stage ``core.reactions`` gives it,
within the round limits); ``decide`` produces the orchestration events no agent owns
(dispatching plan items, closing the task, enforcing round limits), for the events the
same table gives the orchestrator.
Both read the same folded state, so they always agree. Runners pass the *latest* state of
the stream, so a cancelled task stops every agent, and decisions are guarded by state
(an item already dispatched is not dispatched again).

The store records at most one event of a type per (stream, cause). So a decision
dispatches one ready item, and the orchestrator reacts to its own dispatch by dispatching
the next: independent items still start together, each with a cause of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import Field

from forgeline.core.events import (
    ArchitectureProposed,
    Budget,
    BudgetApproved,
    ClarificationAnswered,
    ClarificationRequested,
    CodePrOpened,
    ContextCompacted,
    DeployStatus,
    Event,
    EventData,
    Frozen,
    NewEvent,
    PlanCreated,
    PlanItemCompleted,
    PlanItemDispatched,
    PreviewStopped,
    Resume,
    ReviewDecision,
    StageFailed,
    TaskAwaitingApproval,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskInitiated,
    TestResults,
    task_stream,
)
from forgeline.core.plan import (
    ItemState,
    ItemStatus,
    NodeKind,
    all_completed,
    ready,
    waiting_for_answer,
    with_status,
)
from forgeline.core.reactions import ORCHESTRATOR, Stage, orchestrator_reacts, routed_stage
from forgeline.errors import InvalidRequestError

TaskStatus = Literal[
    "new",
    "running",
    "needs_clarification",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class TaskState(Frozen):
    task_id: str
    status: TaskStatus = "new"
    request: str = ""
    repository: str = ""
    """The repository, relative to the workspaces root (``TaskInitiated.repository``)."""
    checkout: str | None = None
    """The checkout's absolute path, for tasks recorded before repositories had names."""
    branch: str = ""
    base_commit: str = ""
    head: str = ""
    max_fix_rounds: int = 3
    max_review_rounds: int = 3
    budget: Budget = Budget()
    paused: tuple[TaskAwaitingApproval, ...] = ()
    """Stages stopped by the budget, each waiting to re-run on its trigger."""
    plan_summary: str = ""
    items: dict[str, ItemState] = Field(default_factory=dict)
    architecture: ArchitectureProposed | None = None
    code_rounds: int = 0
    fix_rounds: int = 0
    review_rounds: int = 0
    files: tuple[str, ...] = ()
    parents: frozenset[str] = frozenset()
    """Commits known to have a recorded child (see ``PlanItemCompleted.parent``)."""
    last_test: TestResults | None = None
    last_review: ReviewDecision | None = None
    deploy: DeployStatus | None = None
    preview_pid: int | None = None
    """The web preview's process group while it runs (deployed and not yet stopped)."""
    failure: str | None = None
    context_summary: str = ""
    version: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def settled(state: TaskState) -> bool:
    """The task needs nobody but a person now: finished, or waiting for an answer or for
    a budget approval."""
    return state.terminal or state.status in ("needs_clarification", "awaiting_approval")


# ----------------------------------------------------------------------- evolve


def evolve(state: TaskState, event: Event) -> TaskState:
    data = event.data
    u: dict[str, object] = {"version": event.version}
    match data:
        case TaskInitiated():
            u |= {
                "status": "running",
                "request": data.request,
                "repository": data.repository,
                "checkout": data.checkout,
                "branch": data.branch,
                "base_commit": data.base_commit,
                "head": data.base_commit,
                "max_fix_rounds": data.max_fix_rounds,
                "max_review_rounds": data.max_review_rounds,
                "budget": data.budget,
            }
        case PlanCreated():
            u |= {
                "plan_summary": data.summary,
                "items": {item.id: ItemState(item=item) for item in data.items},
                "head": data.commit,
            }
        case ArchitectureProposed():
            u |= {"architecture": data, "head": data.commit}
        case PlanItemDispatched():
            u["items"] = with_status(state.items, data.item_id, ItemStatus.RUNNING)
        case ClarificationRequested():
            u |= {
                "status": "needs_clarification",
                "items": with_status(state.items, data.item_id, ItemStatus.NEEDS_CLARIFICATION),
            }
        case ClarificationAnswered():
            items = with_status(state.items, data.item_id, ItemStatus.COMPLETED, answer=data.answer)
            u |= {
                "items": items,
                "status": "needs_clarification" if waiting_for_answer(items) else "running",
            }
        case PlanItemCompleted():
            u |= {
                "items": with_status(
                    state.items, data.item_id, ItemStatus.COMPLETED, commit=data.commit
                ),
                "files": _merge(state.files, data.files),
            }
            # Concurrent items commit one after another but may be recorded in either
            # order: a commit that is already some recorded commit's parent is older.
            if data.commit not in state.parents:
                u["head"] = data.commit
            if data.parent is not None:
                u["parents"] = state.parents | {data.parent}
        case CodePrOpened():
            u |= {
                "head": data.commit,
                "files": _merge(state.files, data.files),
                "code_rounds": state.code_rounds + 1,
            }
            if data.reason == "fix":
                u["fix_rounds"] = state.fix_rounds + 1
            elif data.reason == "review":
                u["review_rounds"] = state.review_rounds + 1
        case TestResults():
            u["last_test"] = data
        case ReviewDecision():
            u["last_review"] = data
        case DeployStatus():
            u |= {"deploy": data, "preview_pid": data.pid}
            if data.commit is not None:
                u["head"] = data.commit
        case TaskCompleted():
            u["status"] = "completed"
        case TaskFailed():
            u |= {"status": "failed", "failure": data.reason}
        case TaskCancelled():
            u |= {"status": "cancelled", "failure": data.reason}
        case PreviewStopped():
            u["preview_pid"] = None
        case ContextCompacted() if data.role is None:
            u["context_summary"] = data.summary
        case TaskAwaitingApproval():
            u |= {"status": "awaiting_approval", "paused": (*state.paused, data)}
        case BudgetApproved():
            waiting = waiting_for_answer(state.items)
            u |= {
                "budget": data.budget,
                "paused": (),
                "status": "needs_clarification" if waiting else "running",
            }
        case _:
            pass
    return state.model_copy(update=u)


def fold(task_id: str, events: Iterable[Event]) -> TaskState:
    state = TaskState(task_id=task_id)
    for event in events:
        state = evolve(state, event)
    return state


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))


# --------------------------------------------------------------------- routing


def next_stage(state: TaskState, event: Event) -> Stage | None:
    """The agent that acts on ``event``, given the task's latest state (which includes
    ``event``); ``None`` when no agent does, including once the task has ended."""
    if state.terminal:
        return None
    stage = routed_stage(event.data)  # the reaction table's stage for the event
    match event.data:
        case TestResults(ok=False) if state.fix_rounds >= state.max_fix_rounds:
            return None
        case ReviewDecision(approved=False) if state.review_rounds >= state.max_review_rounds:
            return None
    return stage


# -------------------------------------------------------------------- commands


class Initialize(Frozen):
    task_id: str
    request: str
    repository: str
    branch: str
    base_commit: str
    max_fix_rounds: int = 3
    max_review_rounds: int = 3
    budget: Budget = Budget()
    at: datetime


class React(Frozen):
    """React to an event a stage, the user or the orchestrator itself recorded (note 004's
    ``HandleExecutorEvent``)."""

    event: Event
    at: datetime


class Answer(Frozen):
    answer: str
    at: datetime


class Approve(Frozen):
    """Raise a paused task's budget and let its paused stages continue."""

    budget: Budget
    at: datetime


class Cancel(Frozen):
    reason: str = "cancelled by user"
    at: datetime


class CompactContext(Frozen):
    summary: str
    dropped_items: tuple[str, ...] = ()
    at: datetime


Command = Initialize | React | Answer | Approve | Cancel | CompactContext


def decide(state: TaskState, command: Command) -> list[NewEvent]:
    match command:
        case Initialize():
            return _initialize(state, command)
        case React():
            if state.terminal or not orchestrator_reacts(command.event.data):
                return []
            return _emit(state, command.event.id, command.at, _react(state, command.event))
        case Answer():
            return _answer(state, command)
        case Approve():
            return _approve(state, command)
        case Cancel():
            if state.terminal:
                raise InvalidRequestError(f"task {state.task_id} is already {state.status}")
            return _emit(state, None, command.at, [TaskCancelled(reason=command.reason)])
        case CompactContext():
            summary = ContextCompacted(summary=command.summary, dropped_items=command.dropped_items)
            return _emit(state, None, command.at, [summary])


def _initialize(state: TaskState, command: Initialize) -> list[NewEvent]:
    if state.status != "new":
        raise InvalidRequestError(f"task {state.task_id} already exists")
    request = command.request.strip()
    if not request:
        raise InvalidRequestError("the request is empty: say what to build")
    if command.max_fix_rounds < 0 or command.max_review_rounds < 0:
        raise InvalidRequestError("round limits must be zero or more")
    data = TaskInitiated(
        request=request,
        repository=command.repository,
        branch=command.branch,
        base_commit=command.base_commit,
        max_fix_rounds=command.max_fix_rounds,
        max_review_rounds=command.max_review_rounds,
        budget=command.budget,
    )
    return [
        NewEvent(
            id=_event_id(command.task_id, "task.initiated", 0),
            stream_id=task_stream(command.task_id),
            data=data,
            correlation_id=command.task_id,
            actor="user",
            created_at=command.at,
        )
    ]


def _answer(state: TaskState, command: Answer) -> list[NewEvent]:
    waiting = waiting_for_answer(state.items)
    if state.status != "needs_clarification" or not waiting:
        raise InvalidRequestError(
            f"task {state.task_id} is {state.status} and is not waiting for an answer"
        )
    if not command.answer.strip():
        raise InvalidRequestError("the answer is empty")
    answered = ClarificationAnswered(item_id=waiting[0].item.id, answer=command.answer.strip())
    return [
        NewEvent(
            stream_id=task_stream(state.task_id),
            data=answered,
            correlation_id=state.task_id,
            actor="user",
            created_at=command.at,
        )
    ]


def _approve(state: TaskState, command: Approve) -> list[NewEvent]:
    if state.status != "awaiting_approval" or not state.paused:
        raise InvalidRequestError(
            f"task {state.task_id} is {state.status} and is not waiting for approval"
        )
    approved = BudgetApproved(
        budget=command.budget,
        resumes=tuple(Resume(stage=p.stage, trigger_id=p.trigger_id) for p in state.paused),
    )
    return [
        NewEvent(
            stream_id=task_stream(state.task_id),
            data=approved,
            correlation_id=state.task_id,
            actor="user",
            created_at=command.at,
        )
    ]


def _react(state: TaskState, event: Event) -> list[EventData]:
    """What the orchestrator records after ``event`` (only events the reaction table
    gives it reach here)."""
    data = event.data
    match data:
        case (
            ArchitectureProposed()
            | PlanItemDispatched()
            | ClarificationRequested()
            | ClarificationAnswered()
            | PlanItemCompleted()
        ):
            return _dispatch(state)
        case StageFailed():
            return [TaskFailed(reason=f"{data.stage} failed: {data.error}")]
        case TestResults() if not data.ok and state.fix_rounds >= state.max_fix_rounds:
            failing = ", ".join(data.failing[:10]) or "see the test output"
            return [
                TaskFailed(
                    reason=f"tests still fail after {state.fix_rounds} fix round(s) "
                    f"(limit {state.max_fix_rounds}): {failing}. Fix by hand on branch "
                    f"{state.branch}, or run again with a higher --max-fix-rounds"
                )
            ]
        case ReviewDecision() if (
            not data.approved and state.review_rounds >= state.max_review_rounds
        ):
            comments = "; ".join(data.comments[:5]) or "no comments given"
            return [
                TaskFailed(
                    reason=f"the reviewer still requests changes after {state.review_rounds} "
                    f"round(s) (limit {state.max_review_rounds}): {comments}"
                )
            ]
        case DeployStatus():
            if data.ok:
                where = f" at {data.url}" if data.url else ""
                return [TaskCompleted(summary=f"deployed ({data.kind}){where} from {state.head}")]
            return [TaskFailed(reason=f"the {data.kind} smoke check failed: {data.output[-500:]}")]
        case _:
            return []


def _dispatch(state: TaskState) -> list[EventData]:
    """The next orchestration step of the plan: one item, or the finished code."""
    if state.architecture is None or state.code_rounds > 0:
        return []
    if all_completed(state.items):
        return [
            CodePrOpened(
                branch=state.branch, commit=state.head, round=0, reason="plan", files=state.files
            )
        ]
    for item_state in ready(state.items):
        item = item_state.item
        if item.kind == NodeKind.CLARIFICATION:
            return [
                ClarificationRequested(item_id=item.id, question=item.description or item.title)
            ]
        return [PlanItemDispatched(item_id=item.id)]
    return []


def _emit(
    state: TaskState, cause: str | None, at: datetime, payloads: list[EventData]
) -> list[NewEvent]:
    return [
        NewEvent(
            id=_event_id(cause or f"{state.task_id}@{state.version}", data.type, i),
            stream_id=task_stream(state.task_id),
            data=data,
            correlation_id=state.task_id,
            causation_id=cause,
            actor=ORCHESTRATOR,
            created_at=at,
        )
        for i, data in enumerate(payloads)
    ]


_NAMESPACE = uuid.UUID("6f1c3a52-9b1e-4d0e-8f5e-2a7d9c1b4e30")


def _event_id(cause: str, event_type: str, index: int) -> str:
    return uuid.uuid5(_NAMESPACE, f"{cause}/{event_type}/{index}").hex
