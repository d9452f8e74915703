"""Who reacts to each event type, and where it leaves the task: the one table.

``REACTIONS`` says, for every event type that moves a task (and, where the data decides,
for which data), the stage that acts on it, whether the orchestrator (``decide`` with
``React``) may react to it, and the status and phase the task's read model shows once
it is recorded. Everything else is derived from it:

- ``routed_stage`` / ``reacting_stages``: the stage (or stages) that act on an event,
  whatever the state (``core.task.next_stage`` adds the round limits);
- ``orchestrator_reacts``: whether ``decide`` may react to it; it over-approximates
  ``core.task._react`` (a test checks every state of a run), so a worker that skips an
  event the table says no to never skips work;
- ``INTERESTS``: the event types each role's worker looks at (``Pipeline.concerns``);
- ``phase_after``: the ``tasks`` read model's status and phase (``store.projections``).

The budget pause is two rows like any other: ``task.awaiting_approval`` parks the task,
and ``budget.approved`` is acted on by each stage it resumes (one that calls a model).
Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from forgeline.core.events import EventData

Stage = Literal[
    "planner", "assigner", "architect", "coder", "tester", "fixer", "reviewer", "deployer"
]
STAGES: tuple[Stage, ...] = (
    "planner",
    "assigner",
    "architect",
    "coder",
    "tester",
    "fixer",
    "reviewer",
    "deployer",
)
ORCHESTRATOR: Final = "orchestrator"
Role = Stage | Literal["orchestrator"]
"""Who acts on events: a stage agent, or the orchestrator (``core.task.decide``)."""
ROLES: tuple[Role, ...] = (ORCHESTRATOR, *STAGES)
PAUSABLE: tuple[Stage, ...] = ("planner", "architect", "coder", "fixer", "reviewer")
"""The stages that call a model, so the budget can pause them."""

PAUSED: Final = "paused"
"""As a row's ``stage``: each stage the event resumes (``BudgetApproved.resumes``); as
its ``phase``: the stage the event names (paused or first resumed)."""


@dataclass(frozen=True)
class Reaction:
    """What follows once an event of ``type`` is recorded (for data ``when`` accepts)."""

    type: str
    stage: Stage | Literal["paused"] | None = None
    """The stage that acts on the event, if any."""
    orchestrator: bool = False
    """Whether the orchestrator may react to it (in some state)."""
    status: str | None = None
    """The task's status in the read model afterwards; None: the row does not move."""
    phase: str | None = None
    when: Callable[[EventData], bool] | None = None


def _passed(data: EventData) -> bool:
    return data.type == "test.results" and data.ok


def _failed(data: EventData) -> bool:
    return data.type == "test.results" and not data.ok


def planned(data: EventData) -> bool:
    """The route rule: a ``spec.derived`` goes to the planner (plan -> architect -> items)
    when its tier always plans, when the request names more than one module, or when the
    repository holds code already; else straight to the coder's candidates (a request for
    one module, class, command line or service)."""
    return data.type == "spec.derived" and (
        data.plans == "always" or len(data.files) > 1 or data.existing_code
    )


def _direct(data: EventData) -> bool:
    return data.type == "spec.derived" and not planned(data)


def _attempt_failed(data: EventData) -> bool:
    """A direct attempt none of whose candidates met the spec: the planner runs next,
    with the closest candidate on the branch."""
    return data.type == "candidate.chosen" and not data.spec_ok


def _approved(data: EventData) -> bool:
    return data.type == "review.decision" and data.approved


def _changes_requested(data: EventData) -> bool:
    return data.type == "review.decision" and not data.approved


REACTIONS: tuple[Reaction, ...] = (
    # the planner derives the spec first; the route follows from what it records
    Reaction("task.initiated", stage="planner", status="running", phase="planner"),
    Reaction("spec.derived", when=planned, stage="planner", status="running", phase="planner"),
    Reaction("spec.derived", when=_direct, stage="coder", status="running", phase="coder"),
    Reaction(
        "candidate.chosen", when=_attempt_failed, stage="planner", status="running", phase="planner"
    ),
    # the assigner gives the task an agent for its complexity (``core.agents``) ...
    Reaction("plan.created", stage="assigner", status="running", phase="assigner"),
    # ... or it waits until one is free; the agent's models then run every later stage
    Reaction("task.waiting", status="waiting", phase="assigner"),
    Reaction("task.assigned", stage="architect", status="running", phase="architect"),
    Reaction("architecture.proposed", orchestrator=True, status="running", phase="coder"),
    Reaction(
        "plan.item.dispatched", stage="coder", orchestrator=True, status="running", phase="coder"
    ),
    Reaction(
        "clarification.requested", orchestrator=True, status="needs_clarification", phase="coder"
    ),
    Reaction("clarification.answered", orchestrator=True, status="running", phase="coder"),
    Reaction("plan.item.completed", orchestrator=True, status="running", phase="coder"),
    Reaction("code.pr.opened", stage="tester", status="running", phase="tester"),
    Reaction(
        "test.results",
        when=_passed,
        stage="reviewer",
        orchestrator=True,  # skips the review where the task's tier has none
        status="running",
        phase="reviewer",
    ),
    Reaction(
        "test.results",
        when=_failed,
        stage="fixer",
        orchestrator=True,  # fails the task once the fix rounds are used up
        status="running",
        phase="fixer",
    ),
    Reaction(
        "review.decision", when=_approved, stage="deployer", status="running", phase="deployer"
    ),
    Reaction(
        "review.decision",
        when=_changes_requested,
        stage="coder",
        orchestrator=True,  # fails the task once the review rounds are used up
        status="running",
        phase="coder",
    ),
    Reaction("review.skipped", stage="deployer", status="running", phase="deployer"),
    Reaction("deploy.status", orchestrator=True, status="running", phase="deployer"),
    Reaction("stage.failed", orchestrator=True),
    # the budget pause: a stage stopped before a model call would cross the budget ...
    Reaction("task.awaiting_approval", status="awaiting_approval", phase=PAUSED),
    # ... and each paused stage runs again on its trigger once a person raises it
    Reaction("budget.approved", stage=PAUSED, status="running", phase=PAUSED),
    Reaction("task.completed", status="completed", phase="done"),
    Reaction("task.failed", status="failed", phase="done"),
    Reaction("task.cancelled", status="cancelled", phase="done"),
)

_BY_TYPE: dict[str, tuple[Reaction, ...]] = {}
for _row in REACTIONS:
    _BY_TYPE[_row.type] = (*_BY_TYPE.get(_row.type, ()), _row)


def reaction(data: EventData) -> Reaction | None:
    """The table's row for an event with payload ``data``; None: nothing follows it."""
    for row in _BY_TYPE.get(data.type, ()):
        if row.when is None or row.when(data):
            return row
    return None


def _interests(role: Role) -> frozenset[str]:
    if role == ORCHESTRATOR:
        return frozenset(r.type for r in REACTIONS if r.orchestrator)
    return frozenset(
        r.type for r in REACTIONS if r.stage == role or (r.stage == PAUSED and role in PAUSABLE)
    )


INTERESTS: dict[Role, frozenset[str]] = {role: _interests(role) for role in ROLES}
"""The event types each role may act on: a worker skips the rest without reading."""


def routed_stage(data: EventData) -> Stage | None:
    """The one stage that acts on an event with this payload, whatever the state; None
    for an event no single stage owns (a budget approval: see ``reacting_stages``)."""
    row = reaction(data)
    if row is None or row.stage is None or row.stage == PAUSED:
        return None
    return row.stage


def reacting_stages(data: EventData) -> tuple[str, ...]:
    """Every stage that may act on an event with this payload."""
    row = reaction(data)
    if row is None or row.stage is None:
        return ()
    if row.stage != PAUSED:
        return (row.stage,)
    return tuple(r.stage for r in data.resumes) if data.type == "budget.approved" else ()


def orchestrator_reacts(data: EventData) -> bool:
    """Whether the orchestrator can react to an event with this payload in some state;
    False means never, whatever the state."""
    row = reaction(data)
    return row is not None and row.orchestrator


def phase_after(data: EventData) -> tuple[str, str] | None:
    """The task's (status, phase) in the read model once an event with this payload is
    recorded; None when it does not move the task."""
    row = reaction(data)
    if row is None or row.status is None or row.phase is None:
        return None
    phase = row.phase
    if phase == PAUSED:
        if data.type == "task.awaiting_approval":
            phase = data.stage
        elif data.type == "budget.approved":
            phase = data.resumes[0].stage if data.resumes else "approval"
    return row.status, phase
