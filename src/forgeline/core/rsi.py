"""The change tracker (note 000's CTRM) for the changes the evolution daemon proposes, pure.

Each change is a stream ``ctrm-<change id>``:

```
rsi.task.created (pending) ─> ctrm.update in_progress ─> completed ─> rsi.change.merged
                                   │  ↑                      └──────> rsi.change.declined
                                   │  └─ in_progress (a budget raised)
                                   ├─> paused (its budget ran out, it asks a question)
                                   └─> failed
rsi.task.rejected (failed: the RSITask was invalid; nothing ran)
```

A stage's own change (``core/changes.py``) is a different thing: one step of one task,
opened by the stage itself. An evolution change exists before any task does (pending),
can wait for a person twice (a budget, an approval) and ends merged or declined, so it has
a stream kind and a lifecycle of its own.

``tracked(change, event)`` is the tracker's reaction to an event of the change's pipeline
task: the ``CTRMUpdate`` to record, or None. The parts that need I/O (the diff's hash, a
scan of the result) are filled in at the edge (``forgeline.evolve.tracker``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from forgeline.core.events import (
    Budget,
    BudgetApproved,
    ChangeDeclined,
    ChangeMerged,
    ClarificationAnswered,
    ClarificationRequested,
    CTRMUpdate,
    Event,
    EventData,
    Frozen,
    NewEvent,
    RSITask,
    RSITaskCreated,
    RSITaskRejected,
    SignalCounts,
    TaskAwaitingApproval,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    ctrm_stream,
)

ChangeStatus = Literal[
    "new", "pending", "in_progress", "paused", "completed", "failed", "merged", "declined"
]
STATUSES: tuple[ChangeStatus, ...] = (
    "pending",
    "in_progress",
    "paused",
    "completed",
    "failed",
    "merged",
    "declined",
)
#: Work on the change goes on without a person.
IN_FLIGHT: frozenset[str] = frozenset({"pending", "in_progress"})
#: The change still holds its module: nothing else may change it meanwhile.
OPEN: frozenset[str] = frozenset({"pending", "in_progress", "paused", "completed"})
#: The change needs nobody but a person now (or nobody at all).
SETTLED: frozenset[str] = frozenset({"paused", "completed", "failed", "merged", "declined"})


class RSIChange(Frozen):
    """A change's state, folded from its stream."""

    change_id: str
    status: ChangeStatus = "new"
    task: RSITask | None = None
    cycle: int = 0
    repository: str = ""
    branch: str = ""
    base_commit: str = ""
    fingerprint: str = ""
    budget: Budget = Budget()
    task_id: str | None = None
    commit: str | None = None
    generated_hash: str | None = None
    files: tuple[str, ...] = ()
    after: SignalCounts | None = None
    regressions: tuple[str, ...] = ()
    error_log: str | None = None
    merged_commit: str | None = None
    approved_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0

    @property
    def target_module(self) -> str:
        return self.task.target_module if self.task is not None else ""

    @property
    def summary(self) -> str:
        return self.task.patch_definition.summary if self.task is not None else ""


def evolve(state: RSIChange, event: Event) -> RSIChange:
    data = event.data
    update: dict[str, object] = {"version": event.version, "updated_at": event.created_at}
    match data:
        case RSITaskCreated():
            update |= {
                "status": "pending",
                "task": data.task,
                "cycle": data.cycle,
                "repository": data.repository,
                "branch": data.branch,
                "base_commit": data.base_commit,
                "fingerprint": data.fingerprint,
                "budget": data.budget,
                "created_at": event.created_at,
            }
        case RSITaskRejected():
            update |= {
                "status": "failed",
                "cycle": data.cycle,
                "repository": data.repository,
                "fingerprint": data.fingerprint,
                "error_log": data.reason,
                "created_at": event.created_at,
            }
        case CTRMUpdate():
            update["status"] = data.status
            if data.task_id is not None:
                update["task_id"] = data.task_id
            if data.status == "in_progress":
                update["error_log"] = None
            if data.status in ("failed", "paused"):
                update["error_log"] = data.error_log
            if data.status == "completed":
                update |= {
                    "commit": data.commit,
                    "generated_hash": data.generated_hash,
                    "files": data.files,
                    "after": data.after,
                    "regressions": data.regressions,
                }
        case ChangeMerged():
            update |= {
                "status": "merged",
                "merged_commit": data.commit,
                "approved_by": data.approved_by,
            }
        case ChangeDeclined():
            update |= {"status": "declined", "error_log": data.reason}
        case _:
            pass
    return state.model_copy(update=update)


def fold(change_id: str, events: Iterable[Event]) -> RSIChange:
    state = RSIChange(change_id=change_id)
    for event in events:
        state = evolve(state, event)
    return state


# The statuses each event may follow (a CTRMUpdate by its status).
_NEXT: dict[str, tuple[ChangeStatus, ...]] = {
    "rsi.task.created": ("new",),
    "rsi.task.rejected": ("new",),
    "in_progress": ("pending", "paused"),
    "paused": ("in_progress",),
    "completed": ("in_progress",),
    "failed": ("pending", "in_progress", "paused"),
    "rsi.change.merged": ("completed",),
    "rsi.change.declined": ("pending", "in_progress", "paused", "completed"),
}


class ChangeTransitionError(ValueError):
    pass


def allowed(state: RSIChange, data: EventData) -> bool:
    """Whether ``data`` may be recorded on the change now."""
    key = data.status if isinstance(data, CTRMUpdate) else data.type
    return key in _NEXT and state.status in _NEXT[key]


def decide(
    state: RSIChange,
    data: EventData,
    *,
    correlation_id: str,
    causation_id: str | None,
    actor: str,
    at: datetime,
    event_id: str | None = None,
) -> list[NewEvent]:
    """Record the next step of a change; only the lifecycle's own order is allowed."""
    if not isinstance(
        data, RSITaskCreated | RSITaskRejected | CTRMUpdate | ChangeMerged | ChangeDeclined
    ):
        raise ChangeTransitionError(f"{data.type} is not a change-tracker event")
    if not allowed(state, data):
        step = data.status if isinstance(data, CTRMUpdate) else data.type
        raise ChangeTransitionError(
            f"change {state.change_id} is {state.status}; {step} is not allowed now"
        )
    extra = {} if event_id is None else {"id": event_id}
    return [
        NewEvent(
            stream_id=ctrm_stream(state.change_id),
            data=data,
            correlation_id=correlation_id,
            causation_id=causation_id,
            actor=actor,
            created_at=at,
            **extra,
        )
    ]


def tracked(change: RSIChange, event: Event) -> CTRMUpdate | None:
    """The tracker's reaction to ``event`` of the change's pipeline task: the update to
    record (``completed`` without its hash, commit and scan, which the edge adds), or None
    when the event does not move the change (or the change cannot move now)."""
    if change.task_id is None or event.correlation_id != change.task_id:
        return None
    data = event.data
    update: CTRMUpdate | None
    match data:
        case TaskCompleted():
            update = CTRMUpdate(status="completed", task_id=change.task_id)
        case TaskFailed():
            update = CTRMUpdate(status="failed", task_id=change.task_id, error_log=data.reason)
        case TaskCancelled():
            update = CTRMUpdate(
                status="failed", task_id=change.task_id, error_log=f"cancelled: {data.reason}"
            )
        case TaskAwaitingApproval():
            update = CTRMUpdate(
                status="paused",
                task_id=change.task_id,
                error_log=f"{data.stage}: {data.reason} (raise it: forgeline approve "
                f"{change.task_id} --budget-tokens N or --budget-usd X)",
            )
        case ClarificationRequested():
            update = CTRMUpdate(
                status="paused",
                task_id=change.task_id,
                error_log=f"the task asks: {data.question} (answer it: forgeline answer "
                f"{change.task_id} TEXT)",
            )
        case BudgetApproved() | ClarificationAnswered():
            update = CTRMUpdate(status="in_progress", task_id=change.task_id)
        case _:
            update = None
    if update is None or not allowed(change, update):
        return None
    return update
