"""Read models as functions of events (note 001's ``tasks`` and ``agent_events``).

Backends apply ``task_update`` inside the append transaction and replay it over the whole
log in ``rebuild_projections``; the mapping itself is plain data and lives only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeline.core.events import Event, NewEvent, task_id_of

# The phase a task is in once an event of this type is recorded, and its status.
_PHASE_AFTER: dict[str, tuple[str, str]] = {
    "task.initiated": ("running", "planner"),
    "plan.created": ("running", "architect"),
    "architecture.proposed": ("running", "coder"),
    "plan.item.dispatched": ("running", "coder"),
    "plan.item.completed": ("running", "coder"),
    "clarification.requested": ("needs_clarification", "coder"),
    "clarification.answered": ("running", "coder"),
    "code.pr.opened": ("running", "tester"),
    "test.results": ("running", "reviewer"),
    "review.decision": ("running", "deployer"),
    "deploy.status": ("running", "deployer"),
    "task.awaiting_approval": ("awaiting_approval", "approval"),
    "budget.approved": ("running", "approval"),
    "task.completed": ("completed", "done"),
    "task.failed": ("failed", "done"),
    "task.cancelled": ("cancelled", "done"),
}


# A finished task's row keeps its status (an agent finishing after a cancel does not
# reopen it): backends add ``AND status NOT IN`` this list to their updates.
FINAL_STATUSES_SQL = "('completed', 'failed', 'cancelled')"


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
    if event.type not in _PHASE_AFTER:
        return TaskUpdate(task_id, None, None, None)
    status, phase = _PHASE_AFTER[event.type]
    data = event.data
    if data.type == "test.results" and not data.ok:
        phase = "fixer"
    elif data.type == "review.decision" and not data.approved:
        phase = "coder"
    elif data.type == "task.awaiting_approval":
        phase = data.stage
    elif data.type == "budget.approved" and data.resumes:
        phase = data.resumes[0].stage
    request = data.request if data.type == "task.initiated" else None
    return TaskUpdate(task_id, status, phase, request)
