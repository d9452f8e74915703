"""What the API takes and gives, apart from the domain's events and states: requests are
checked here (422 naming the field), answers are built from states by the ``*_out``
functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgeline.config import ModelRole
from forgeline.core.agents import AgentState
from forgeline.core.events import Budget, Event
from forgeline.core.keys import KeyState, Scope
from forgeline.core.task import TaskState
from forgeline.llm.metered import UsageRow
from forgeline.store.base import TaskRow
from forgeline.transport.deadletters import DeadLetter


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


# ------------------------------------------------------------------------- tasks


class BudgetIn(In):
    tokens: int | None = Field(default=None, ge=0, le=10**12)
    usd: float | None = Field(default=None, ge=0, le=10**9)

    def budget(self) -> Budget:
        return Budget(tokens=self.tokens, usd=self.usd)


class TaskIn(In):
    request: str = Field(min_length=1, max_length=100_000, description="What to build.")
    workspace: str = Field(
        min_length=1,
        max_length=1024,
        description="The repository: a name under the workspaces root, or a path inside "
        "it (created if absent).",
    )
    max_fix_rounds: int | None = Field(default=None, ge=0, le=50)
    max_review_rounds: int | None = Field(default=None, ge=0, le=50)
    budget: BudgetIn | None = None

    _request = field_validator("request", "workspace")(_text)


class AnswerIn(In):
    answer: str = Field(min_length=1, max_length=100_000)

    _answer = field_validator("answer")(_text)


class ApproveIn(In):
    budget: BudgetIn


class TaskSummary(BaseModel):
    id: str
    status: str
    phase: str
    request: str
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    tasks: list[TaskSummary]
    total: int
    offset: int
    limit: int
    position: int = Field(
        description="The log position this list reflects: follow the stream after it."
    )


class ItemOut(BaseModel):
    id: str
    title: str
    description: str
    kind: str
    depends_on: list[str]
    files: list[str]
    status: str
    commit: str | None


class PlanOut(BaseModel):
    summary: str
    items: list[ItemOut]


class TestsOut(BaseModel):
    __test__ = False
    commit: str
    passed: int
    failed: int
    errors: int
    skipped: int
    failing: list[str]
    output: str
    timed_out: bool
    ok: bool


class ReviewOut(BaseModel):
    approved: bool
    comments: list[str]
    commit: str


class DeployOut(BaseModel):
    ok: bool
    kind: str
    url: str | None
    output: str


class UsageOut(BaseModel):
    task_id: str
    role: str
    model: str
    calls: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float


class ParkedOut(BaseModel):
    """A stage's work parked in the dead-letter queue after its last try."""

    role: str
    event_type: str
    attempts: int
    error: str = Field(description="The last try's error.")
    worker: str
    at: datetime


class CommitOut(BaseModel):
    sha: str
    subject: str


class TaskOut(BaseModel):
    id: str
    status: str
    phase: str
    request: str
    repository: str
    branch: str
    base_commit: str
    head: str
    complexity: int | None
    agent: str | None
    waiting: str | None = Field(description="Why no agent has taken the task yet.")
    question: str | None = Field(description="The clarification it waits for, if any.")
    paused: list[str] = Field(description="Why its stages wait for a budget approval.")
    plan: PlanOut | None
    tests: TestsOut | None
    review: ReviewOut | None
    deploy: DeployOut | None
    preview_url: str | None
    usage: list[UsageOut]
    cost_usd: float
    failure: str | None
    commits: list[CommitOut]
    budget: dict[str, float | int | None]
    parked: list[ParkedOut] = Field(
        description="Work in the dead-letter queue (distributed mode): retry it with "
        "`forgeline retry TASK` once the cause is fixed."
    )


def summary_out(row: TaskRow) -> TaskSummary:
    return TaskSummary(
        id=row.id,
        status=row.status,
        phase=row.current_phase,
        request=row.request,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def usage_out(row: UsageRow) -> UsageOut:
    return UsageOut(**vars(row))


def task_out(
    state: TaskState,
    phase: str,
    usage: list[UsageRow],
    commits: list[tuple[str, str]],
    parked: Sequence[DeadLetter] = (),
) -> TaskOut:
    items = [
        ItemOut(
            id=s.item.id,
            title=s.item.title,
            description=s.item.description,
            kind=str(s.item.kind),
            depends_on=list(s.item.depends_on),
            files=list(s.item.files),
            status=str(s.status),
            commit=s.commit,
        )
        for s in state.items.values()
    ]
    questions = [
        s.item.description or s.item.title
        for s in state.items.values()
        if s.status == "needs_clarification"
    ]
    test = state.last_test
    deploy = state.deploy
    total = next((r for r in usage if r.role == "*"), None)
    return TaskOut(
        id=state.task_id,
        status=state.status,
        phase=phase,
        request=state.request,
        repository=state.repository,
        branch=state.branch,
        base_commit=state.base_commit,
        head=state.head,
        complexity=state.complexity,
        agent=state.agent,
        waiting=state.waiting,
        question=questions[0] if questions else None,
        paused=[p.reason for p in state.paused],
        plan=PlanOut(summary=state.plan_summary, items=items) if items else None,
        tests=None
        if test is None
        else TestsOut(
            commit=test.commit,
            passed=test.passed,
            failed=test.failed,
            errors=test.errors,
            skipped=test.skipped,
            failing=list(test.failing),
            output=test.output,
            timed_out=test.timed_out,
            ok=test.ok,
        ),
        review=None
        if state.last_review is None
        else ReviewOut(
            approved=state.last_review.approved,
            comments=list(state.last_review.comments),
            commit=state.last_review.commit,
        ),
        deploy=None
        if deploy is None
        else DeployOut(ok=deploy.ok, kind=deploy.kind, url=deploy.url, output=deploy.output),
        preview_url=deploy.url if deploy is not None and state.preview_pid is not None else None,
        usage=[usage_out(r) for r in usage if r.role != "*"],
        cost_usd=total.cost_usd if total is not None else 0.0,
        failure=state.failure,
        commits=[CommitOut(sha=sha, subject=subject) for sha, subject in commits],
        budget={"tokens": state.budget.tokens, "usd": state.budget.usd},
        parked=[
            ParkedOut(
                role=p.role,
                event_type=p.event_type,
                attempts=p.attempts,
                error=p.error,
                worker=p.worker,
                at=p.at,
            )
            for p in parked
        ],
    )


# ------------------------------------------------------------------------ events


class EventOut(BaseModel):
    id: str
    position: int
    stream_id: str
    version: int
    type: str
    actor: str
    correlation_id: str
    causation_id: str | None
    created_at: datetime
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int = Field(description="Pass as ?after= for the next page.")


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        position=event.position,
        stream_id=event.stream_id,
        version=event.version,
        type=event.type,
        actor=event.actor,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        created_at=event.created_at,
        data=event.data.model_dump(mode="json"),
    )


class ChangeOut(BaseModel):
    id: str
    task_id: str | None
    stage: str | None
    status: str
    description: str
    commit: str | None
    diff_sha256: str | None
    files: list[str]
    error_log: str | None


# ------------------------------------------------------------------------ agents


class AgentIn(In):
    name: str = Field(min_length=1, max_length=40)
    models: dict[ModelRole, str] = Field(
        default_factory=dict,
        description="A model chain per role (primary first: 'a, b'); a role left out "
        "uses the configured chain.",
    )
    min_complexity: int = Field(default=1, ge=1, le=10)
    max_complexity: int = Field(default=10, ge=1, le=10)
    capacity: int = Field(default=1, ge=1, le=1000)


class AgentOut(BaseModel):
    name: str
    models: dict[str, str]
    min_complexity: int
    max_complexity: int
    capacity: int | None = Field(description="Tasks at once; null: no limit.")
    status: Literal["available", "busy"]
    tasks: list[str]
    last_active: datetime | None
    registered: bool = Field(description="False for the default agent.")


def agent_out(agent: AgentState, configured: dict[str, str], registered: bool) -> AgentOut:
    return AgentOut(
        name=agent.name,
        models={**configured, **agent.models},
        min_complexity=agent.min_complexity,
        max_complexity=agent.max_complexity,
        capacity=agent.capacity,
        status=agent.status,
        tasks=list(agent.tasks),
        last_active=agent.last_active,
        registered=registered,
    )


# -------------------------------------------------------------------------- keys


class KeyIn(In):
    name: str = Field(min_length=1, max_length=64)
    scope: Scope


class KeyOut(BaseModel):
    id: str
    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, never stored.")


class WhoAmI(BaseModel):
    id: str
    name: str
    scope: Scope


def key_out(key: KeyState) -> KeyOut:
    return KeyOut(
        id=key.key_id,
        name=key.name,
        scope=key.scope,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


# -------------------------------------------------------------------- workspaces


class WorkspaceOut(BaseModel):
    name: str


class FileEntry(BaseModel):
    path: str
    size: int


class FileContent(BaseModel):
    path: str
    size: int
    text: str
    truncated: bool
    binary: bool


class DiffOut(BaseModel):
    base: str
    head: str
    diff: str


class UploadOut(BaseModel):
    workspace: str
    files: list[str]
    commit: str | None


class Health(BaseModel):
    status: str
