"""The event envelope and every event payload forgeline records.

Events are frozen pydantic models. The payload (``data``) is a discriminated union on its
literal ``type``; a stored type name is forever, so new behaviour gets a new type. A
payload whose shape changes gets a ``schema_version`` and an upcaster per older version
(see "upcasting" below), so old stored events are read in the current shape.

``NewEvent`` is what a handler returns; the store assigns ``version`` (per stream) and
``position`` (global order) and hands back ``Event``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePath, PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- plan


class NodeKind(StrEnum):
    """What a plan item needs (note 004): code, a tool run, or a person's answer."""

    PROCESSING = "processing"
    TOOL_CALL = "tool_call"
    CLARIFICATION = "clarification"


class PlanItem(Frozen):
    """One node of the plan DAG (note 004's ``Task``)."""

    id: str
    title: str
    description: str = ""
    kind: NodeKind = NodeKind.PROCESSING
    depends_on: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


class FileSpec(Frozen):
    path: str
    purpose: str = ""


class RunSpec(Frozen):
    """How the deployer exercises the result.

    ``cli`` and ``library`` run ``command`` once as a smoke test; ``web`` starts ``command``
    (``{port}`` is replaced by a free localhost port, also given as ``PORT``) and polls
    ``health_path`` until it answers 2xx.
    """

    kind: Literal["cli", "library", "web"] = "library"
    command: tuple[str, ...] = ()
    health_path: str = "/health"


class PackageNeed(Frozen):
    """A package the design needs: a requirement specifier (``fastapi>=0.110``) and why."""

    name: str
    reason: str = ""


class FileWrite(Frozen):
    path: str
    content: str


class Budget(Frozen):
    """A task's hard spending cap on model calls; ``None`` is no cap."""

    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)

    def crossed_by(self, tokens: int, usd: float) -> str | None:
        """Why spending ``tokens`` and ``usd`` in all would cross this budget, or None."""
        if self.tokens is not None and tokens > self.tokens:
            return f"{tokens} tokens would exceed the budget of {self.tokens}"
        if self.usd is not None and usd > self.usd:
            return f"${usd:.4f} would exceed the budget of ${self.usd:.4f}"
        return None


class RunUsage(Frozen):
    """What one run of untrusted code used (the spawner's resource usage, as recorded).

    ``mechanism`` says how limits were enforced: ``cgroup-v1``/``cgroup-v2`` or ``rlimit``
    (the sandbox), ``none`` (no sandbox). ``limits_hit`` names the limits it ran into.
    """

    mechanism: str
    wall_s: float
    cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_pids: int | None = None
    limits_hit: tuple[str, ...] = ()


# ------------------------------------------------------------------------ payloads


class TaskInitiated(Frozen):
    type: Literal["task.initiated"] = "task.initiated"
    schema_version: Literal[2] = 2
    request: str
    repository: str
    """The repository the task works on, by its path relative to the workspaces root
    (``Settings.workspaces_root``); the task's worktree follows from it and the task id
    (``workspace.layout.Workspaces``), so the event names no machine's path."""
    branch: str
    base_commit: str
    max_fix_rounds: int = 3
    max_review_rounds: int = 3
    budget: Budget = Budget()
    checkout: str | None = None
    """Only in events recorded as version 1, which named the task's checkout by its
    absolute path: that checkout, used as it is."""


class PlanCreated(Frozen):
    type: Literal["plan.created"] = "plan.created"
    summary: str
    items: tuple[PlanItem, ...]
    commit: str
    complexity: int = Field(default=5, ge=1, le=10)
    """The planner's estimate, 1 (trivial) to 10 (hard): which agents may take the task
    (``core.agents``). Events recorded before estimates read as 5."""


class ArchitectureProposed(Frozen):
    type: Literal["architecture.proposed"] = "architecture.proposed"
    summary: str
    adr_path: str
    files: tuple[FileSpec, ...] = ()
    run: RunSpec = RunSpec()
    commit: str
    packages: tuple[PackageNeed, ...] = ()
    """The packages beyond the standard library the design needs, each with its reason
    (empty in events recorded before designs named them)."""


class PlanItemDispatched(Frozen):
    type: Literal["plan.item.dispatched"] = "plan.item.dispatched"
    item_id: str


class ClarificationRequested(Frozen):
    type: Literal["clarification.requested"] = "clarification.requested"
    item_id: str
    question: str


class ClarificationAnswered(Frozen):
    type: Literal["clarification.answered"] = "clarification.answered"
    item_id: str
    answer: str


class PlanItemCompleted(Frozen):
    type: Literal["plan.item.completed"] = "plan.item.completed"
    item_id: str
    commit: str
    parent: str | None = None
    """The commit the item's commit was made on (items run concurrently)."""
    files: tuple[str, ...] = ()
    change_id: str | None = None


class CodePrOpened(Frozen):
    """The code for this round is committed on the task branch and ready for testing."""

    type: Literal["code.pr.opened"] = "code.pr.opened"
    branch: str
    commit: str
    round: int = 0
    reason: Literal["plan", "fix", "review", "selection"] = "plan"
    """``plan``: the plan's items are done; ``selection``: the chosen candidate of a
    request that went straight to the candidates; ``fix``, ``review``: a later round."""
    files: tuple[str, ...] = ()


class TestResults(Frozen):
    __test__ = False  # not a pytest test class

    type: Literal["test.results"] = "test.results"
    commit: str
    passed: int
    failed: int
    errors: int = 0
    skipped: int = 0
    failing: tuple[str, ...] = ()
    output: str = ""
    timed_out: bool = False
    usage: RunUsage | None = None
    """What the test run used (None in events recorded before usage was)."""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and self.passed > 0 and not self.timed_out


class ReviewDecision(Frozen):
    type: Literal["review.decision"] = "review.decision"
    approved: bool
    comments: tuple[str, ...] = ()
    commit: str


class DeployStatus(Frozen):
    type: Literal["deploy.status"] = "deploy.status"
    ok: bool
    kind: Literal["cli", "library", "web"]
    url: str | None = None
    pid: int | None = None
    output: str = ""
    usage: RunUsage | None = None
    """What the smoke run used; None for a web preview that keeps running (and in events
    recorded before usage was)."""
    preview_id: str | None = None
    """The running web preview's id, which a stopping process resolves to the process
    (``pid`` only informs: it may name another process by then). None in older events."""
    files: tuple[str, ...] = ()
    """Deploy files the deployer wrote (``[deploy] mode``), committed as ``commit``."""
    commit: str | None = None


class SpecCheckLabel(Frozen):
    """One check of a spec: its pytest id in the spec's test files, and what it checks."""

    test_id: str
    kind: Literal["interface", "example"]
    label: str


class SpecDerived(Frozen):
    """What the request itself says the program must be (``forgeline.spec``), as the user
    reads it, and the facts the task's route follows from (``core.reactions.planned``).

    ``spec`` is the whole ``forgeline.spec.Spec`` as data (the later stages read it
    back); ``test_files`` are the spec's checks as pytest files, committed in ``commit``.
    ``tier`` names the model tier (``[profiles.NAME]``) whose ``plans`` and ``review``
    the task follows; ``existing_code``: the repository held Python files already.
    """

    type: Literal["spec.derived"] = "spec.derived"
    digest: str
    files: tuple[str, ...] = ()
    interface: tuple[str, ...] = ()
    """Signatures, command lines and routes, as written."""
    trials: tuple[str, ...] = ()
    trial_sources: tuple[str, ...] = ()
    checks: tuple[SpecCheckLabel, ...] = ()
    notes: tuple[str, ...] = ()
    spec: dict[str, Any] = Field(default_factory=dict)
    test_files: tuple[str, ...] = ()
    commit: str = ""
    tier: str = "frontier"
    plans: Literal["always", "multi_module"] = "always"
    review: bool = True
    existing_code: bool = False
    run: RunSpec | None = None
    """How the deployer exercises the result when no architect is asked."""


class CandidateRecorded(Frozen):
    """One candidate answer of a direct attempt and what it passed (its files are in the
    response cache's ``llm.cached`` event, never in the model's later context)."""

    type: Literal["candidate.recorded"] = "candidate.recorded"
    index: int = 0
    digest: str
    origin: str
    """``greedy``, ``sample`` or ``repair``."""
    files: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    temperature: float | None = None
    seed: int | None = None
    spec_passed: int = 0
    spec_total: int = 0
    spec_failed: tuple[str, ...] = ()
    designer_passed: int = 0


class CandidateChosen(Frozen):
    """Which candidate was chosen and why; ``commit`` holds it on the task's branch with
    the tests it passes (``tests``). ``spec_ok`` False: none met the spec, and the closest
    is on the branch."""

    type: Literal["candidate.chosen"] = "candidate.chosen"
    digest: str | None
    index: int | None = None
    reason: str
    spec_ok: bool
    candidates: int
    scores: tuple[tuple[str, int], ...] = ()
    """``(digest, score)`` for every eligible candidate, best first."""
    consensus_tests: tuple[str, ...] = ()
    repairs: int = 0
    resamples: int = 0
    commit: str | None = None
    files: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    """The test files landed with it: the spec's, the designer tests the consensus agreed
    on, and those of its own that it passes."""


class ReviewSkipped(Frozen):
    """Passing tests go to the deployer without an LLM review: the task's model tier
    says a review by that model adds no signal (``[profiles.NAME] review``)."""

    type: Literal["review.skipped"] = "review.skipped"
    commit: str
    reason: str


class ToolCommand(Frozen):
    """One command an agent ran (or was refused) through the terminal tool.

    ``rule`` is the allowlist rule that allowed it, or the one that denied it; a command
    no rule allows is denied with ``rule`` None. A denied command never ran: no exit code,
    no usage. ``output`` is the tail of its stdout and stderr (or the denial's reason).
    """

    type: Literal["tool.command"] = "tool.command"
    argv: tuple[str, ...]
    denied: bool = False
    rule: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    usage: RunUsage | None = None
    output: str = ""


class PackagePin(Frozen):
    """One wheel a venv got: the distribution (normalized name), its version, and the
    wheel's sha256, size in bytes and file name."""

    name: str
    version: str
    sha256: str
    size: int = 0
    file: str = ""


class PackagesSynced(Frozen):
    """A task's venv was brought to the packages its project declares.

    ``declared``: the requirement specifiers read from ``sources`` (the declaration files),
    plus ``requested`` ones a terminal ``pip install`` added for the time being;
    ``packages``: every wheel of the resolved set, as installed now; ``installed``: the
    names this sync (re)installed; ``removed``: the names it uninstalled; ``venv``: the
    venv, relative to the repository.
    """

    type: Literal["packages.synced"] = "packages.synced"
    declared: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    packages: tuple[PackagePin, ...] = ()
    installed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    downloaded: bool = False
    venv: str = ""
    usage: RunUsage | None = None


class StageFailed(Frozen):
    """An agent could not do its work (bad model output, a crash in its tools)."""

    type: Literal["stage.failed"] = "stage.failed"
    stage: str
    error: str


class FixAttempted(Frozen):
    """One fix round's attempt, recorded by the fixer whatever its outcome.

    ``applied``: the change landed as ``commit`` (the next ``test.results`` for that commit
    says whether it fixed the tests); ``rejected``: no usable change (the back-end failed,
    the patch engine rolled it back); ``no_progress``: the change repeats an earlier round
    (same proposal, or the same task diff as before some earlier round), so the fix loop
    stops. ``fingerprint`` hashes the proposal; ``diff_sha256`` the task's whole diff
    (``git diff base_commit commit``) after the round.
    """

    type: Literal["fix.attempt"] = "fix.attempt"
    attempt: int
    outcome: Literal["applied", "rejected", "no_progress"]
    reason: str = ""
    duration_s: float = 0.0
    backend: str = "llm"
    fingerprint: str | None = None
    diff_sha256: str | None = None
    base_diff_sha256: str | None = None
    """The task diff before this round's change."""
    commit: str | None = None
    files: tuple[str, ...] = ()


class TaskCompleted(Frozen):
    type: Literal["task.completed"] = "task.completed"
    summary: str


class TaskFailed(Frozen):
    type: Literal["task.failed"] = "task.failed"
    reason: str


class TaskCancelled(Frozen):
    type: Literal["task.cancelled"] = "task.cancelled"
    reason: str = "cancelled by user"


class ContextCompacted(Frozen):
    """Older context was summarised: for the whole task (``role`` None, note 004's
    ``CompactContext``) or inside one role's conversation with its model."""

    type: Literal["context.compacted"] = "context.compacted"
    summary: str
    dropped_items: tuple[str, ...] = ()
    role: str | None = None
    tokens_before: int = 0
    tokens_after: int = 0
    trimmed_chars: int = 0


class TaskAwaitingApproval(Frozen):
    """A model call would cross the task's budget: the stage stopped before making it and
    waits for ``forgeline approve``, which re-runs it on the same ``trigger_id``."""

    type: Literal["task.awaiting_approval"] = "task.awaiting_approval"
    stage: str
    trigger_id: str
    reason: str
    spent_tokens: int = 0
    spent_usd: float = 0.0


class Resume(Frozen):
    stage: str
    trigger_id: str


class BudgetApproved(Frozen):
    """A person raised the budget of a paused task; each paused stage re-runs on its
    trigger (several coder items can pause at once)."""

    type: Literal["budget.approved"] = "budget.approved"
    budget: Budget
    resumes: tuple[Resume, ...]


class LlmUsage(Frozen):
    """One model call (or one answer replayed from the response cache, at no cost).

    Recorded in the task's ``usage-<task>`` stream as it happens, with no cause: a re-run
    of a stage really spends again, and the idempotency guard must not merge two calls.
    """

    type: Literal["llm.usage"] = "llm.usage"
    role: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    cache_hit: bool = False


class LlmCached(Frozen):
    """A model's answer kept in the response cache (stream ``llmcache-<key>``)."""

    type: Literal["llm.cached"] = "llm.cached"
    model: str
    response: str
    """The pydantic-ai ``ModelResponse`` as JSON."""


class StageProgress(Frozen):
    """What a stage run is doing, recorded every few seconds while it works (stream
    ``activity-<task>``, no cause; a run that ends within one interval records none).

    ``tokens`` and ``tokens_per_s`` are those of the model answers streaming in (counted
    as they arrive, so about one token a piece until the provider's count at the end);
    ``answered_tokens`` the output tokens of this run's finished calls; ``tests_done``
    and ``tests_total`` those of the pytest runs going on (``tests_total`` once
    collected)."""

    type: Literal["stage.progress"] = "stage.progress"
    stage: str
    trigger_id: str
    item_id: str | None = None
    item_title: str | None = None
    started_at: datetime
    elapsed_s: float
    models: tuple[str, ...] = ()
    """The models answering now (none: not waiting for a model)."""
    tokens: int = 0
    tokens_per_s: float | None = None
    answered_tokens: int = 0
    tests_done: int | None = None
    tests_total: int | None = None


class StageLogged(Frozen):
    """A line of what a stage did ("wrote todo.py (42 lines)", "ran pytest: 7 passed,
    1 failed", "model answered 812 tokens in 31 s"), in stream ``activity-<task>``."""

    type: Literal["stage.log"] = "stage.log"
    stage: str
    trigger_id: str
    text: str


class PreviewStopped(Frozen):
    type: Literal["preview.stopped"] = "preview.stopped"
    pid: int
    preview_id: str | None = None
    """The stopped preview's id (None in older events, and for a preview that had none)."""


# Change tracker (note 000's CTRM): one stream per change.


class ChangePending(Frozen):
    type: Literal["change.pending"] = "change.pending"
    task_id: str
    stage: str
    description: str


class ChangeStarted(Frozen):
    type: Literal["change.in_progress"] = "change.in_progress"


class ChangeCompleted(Frozen):
    type: Literal["change.completed"] = "change.completed"
    commit: str
    diff_sha256: str
    files: tuple[str, ...] = ()


class ChangeFailed(Frozen):
    type: Literal["change.failed"] = "change.failed"
    error_log: str


# Evolution (note 000): the daemon's cycles (stream ``evolve``), and one change-tracker
# (CTRM) stream per change it proposes (``ctrm-<change id>``): the ``RSITask`` created
# (pending) or rejected, then ``CTRMUpdate``s, then a person's (or auto-merge's) decision.

SignalKind = Literal["test", "goal", "type", "lint", "todo", "coverage"]


class SignalCounts(Frozen):
    """What a scan of a repository found, in numbers (a cycle's "before", a change's
    "after")."""

    failing_tests: int = 0
    passing_tests: int = 0
    lint_findings: int = 0
    type_errors: int = 0
    todos: int = 0
    uncovered_functions: int = 0
    goals: int = 0


class SignalRef(Frozen):
    """One signal a cycle found, as recorded (the request written from it is in the
    ``RSITask`` of the change it became, if any)."""

    kind: SignalKind
    fingerprint: str
    target_module: str
    summary: str
    priority: int


class SkippedSignal(Frozen):
    """A signal a cycle did not turn into a change, and the guardrail that said no."""

    fingerprint: str
    reason: str


class PatchDefinition(Frozen):
    """What a change is to do (note 000's ``patch_definition``): the signal it answers and
    the request the implementation agent (the pipeline) gets, written from it."""

    kind: SignalKind
    summary: str = Field(min_length=1, max_length=500)
    request: str = Field(min_length=1, max_length=20_000)
    locations: tuple[str, ...] = ()
    """``path`` or ``path:line`` of what the signal points at."""


class RSITask(Frozen):
    """Note 000's ``RSITask``: one change the evolution daemon asks for. Validated before
    anything of it is recorded as pending; an invalid one is rejected with its reason."""

    change_id: str = Field(pattern=r"^RSI-[0-9]+\.[0-9]+$")
    target_module: str = Field(min_length=1, max_length=300)
    """The repository path the change is about (``.``: the repository as a whole)."""
    patch_definition: PatchDefinition
    priority: int = Field(default=5, ge=1, le=10)

    @field_validator("target_module")
    @classmethod
    def _inside_the_repository(cls, value: str) -> str:
        path = PurePosixPath(value)
        if "\x00" in value or "\\" in value:
            raise ValueError("must be a repository path (no NUL, no backslash)")
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"{value!r} must be a path inside the repository")
        if path.parts[:1] in ((".git",), (".forgeline",)):
            raise ValueError(f"{value!r} is inside {path.parts[0]}/, which no change may touch")
        return value


class CycleRecorded(Frozen):
    """One evolution cycle: what the scan of ``commit`` found, what it proposed (change
    ids), what it rejected as invalid and what the guardrails held back."""

    type: Literal["evolve.cycle.recorded"] = "evolve.cycle.recorded"
    cycle: int
    repository: str
    branch: str
    commit: str
    counts: SignalCounts
    signals: tuple[SignalRef, ...] = ()
    proposed: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    skipped: tuple[SkippedSignal, ...] = ()
    notes: tuple[str, ...] = ()
    """Signals that could not be looked for (a tool missing, a run that broke), and why."""
    budget: Budget = Budget()
    """The budget each of this cycle's changes got (the cycle's, shared out)."""


class ChangeOutcome(Frozen):
    change_id: str
    status: str


class CycleCompleted(Frozen):
    """Every change of the cycle has settled (completed, failed, paused or rejected)."""

    type: Literal["evolve.cycle.completed"] = "evolve.cycle.completed"
    cycle: int
    repository: str
    outcomes: tuple[ChangeOutcome, ...] = ()


class RSITaskCreated(Frozen):
    """A valid ``RSITask`` accepted by the daemon: the change is pending."""

    type: Literal["rsi.task.created"] = "rsi.task.created"
    task: RSITask
    cycle: int
    repository: str
    branch: str
    """The repository's main branch the change is based on and would be merged into."""
    base_commit: str
    fingerprint: str
    budget: Budget = Budget()


class RSITaskRejected(Frozen):
    """An ``RSITask`` that failed validation: recorded as failed, never run."""

    type: Literal["rsi.task.rejected"] = "rsi.task.rejected"
    change_id: str
    cycle: int
    repository: str
    fingerprint: str = ""
    raw: str
    """The task as it was given (JSON), cut to 4,000 characters."""
    reason: str


class CTRMUpdate(Frozen):
    """Note 000's ``CTRMUpdate``: where the implementation of a change stands.

    ``in_progress``: its pipeline task ``task_id`` is running; ``paused``: the task waits
    for a person (its budget ran out, or it asks a question; ``error_log`` says what to
    do);
    ``completed``: the task completed as ``commit``, ``generated_hash`` being the sha256 of
    the change's committed diff (``git diff base_commit commit``), ``after`` a scan of that
    commit and ``regressions`` the tests that passed before the change and do not after;
    ``failed``: ``error_log`` says why.
    """

    type: Literal["ctrm.update"] = "ctrm.update"
    status: Literal["in_progress", "paused", "completed", "failed"]
    task_id: str | None = None
    error_log: str | None = None
    generated_hash: str | None = None
    commit: str | None = None
    files: tuple[str, ...] = ()
    after: SignalCounts | None = None
    regressions: tuple[str, ...] = ()


class ChangeMerged(Frozen):
    """A completed change merged into the repository's main branch."""

    type: Literal["rsi.change.merged"] = "rsi.change.merged"
    branch: str
    commit: str
    """The merge commit on ``branch``."""
    approved_by: Literal["person", "auto-merge"]


class ChangeDeclined(Frozen):
    """A person declined the change (``forgeline changes reject``): never merged."""

    type: Literal["rsi.change.declined"] = "rsi.change.declined"
    reason: str


EvolutionEventData = (
    CycleRecorded
    | CycleCompleted
    | RSITaskCreated
    | RSITaskRejected
    | CTRMUpdate
    | ChangeMerged
    | ChangeDeclined
)


# Research and delivery tools (note 002): one event per call an agent or a person made.
# A refused or failed call is recorded too, with ``error`` saying why.


class SearchHit(Frozen):
    title: str
    url: str
    snippet: str = ""


class ToolSearched(Frozen):
    """One web search: the provider asked (or the cache, ``cached``), the hits it gave."""

    type: Literal["tool.search"] = "tool.search"
    provider: str
    query: str
    hits: tuple[SearchHit, ...] = ()
    cached: bool = False
    error: str | None = None


class SearchCached(Frozen):
    """A provider's answer kept in the search cache (stream ``searchcache-<key>``); it
    expires ``ttl_s`` seconds after the event's ``created_at``."""

    type: Literal["tool.search.cached"] = "tool.search.cached"
    provider: str
    query: str
    hits: tuple[SearchHit, ...]
    ttl_s: float


class PageFetched(Frozen):
    """One URL fetched (or refused) by the fetch tool. The text itself is not recorded;
    ``sha256`` identifies what was extracted."""

    type: Literal["tool.fetch"] = "tool.fetch"
    url: str
    final_url: str | None = None
    status: int | None = None
    title: str = ""
    content_type: str = ""
    bytes: int = 0
    chars: int = 0
    sha256: str | None = None
    fetched_at: datetime | None = None
    error: str | None = None


class ResearchWritten(Frozen):
    """A research note written to the workspace, with its numbered references."""

    type: Literal["tool.research"] = "tool.research"
    topic: str
    path: str
    references: tuple[str, ...] = ()


class GitHubCalled(Frozen):
    """One GitHub action: ``push``, ``pull_request``, ``comment``, ``close_issue`` or
    ``read_issue``. Tokens are never part of it."""

    type: Literal["tool.github"] = "tool.github"
    action: Literal["push", "pull_request", "comment", "close_issue", "read_issue"]
    repository: str
    number: int | None = None
    url: str | None = None
    ref: str | None = None
    error: str | None = None


class EmailSent(Frozen):
    """One notification sent (or that failed to send) over SMTP."""

    type: Literal["tool.email"] = "tool.email"
    outcome: str
    recipients: tuple[str, ...]
    subject: str
    attachments: tuple[str, ...] = ()
    error: str | None = None


# Agents and API keys (the server, note 002). The registry of agents is the ``agents``
# stream, API keys the ``apikeys`` stream; a task's assignment is in its own stream too.

AGENTS_STREAM = "agents"
KEYS_STREAM = "apikeys"


class AgentRegistered(Frozen):
    """An agent was added (or replaced, by name): the models it runs each role on (a
    chain ``a, b`` per role; a role left out uses the configured one), the task
    complexities it takes and how many tasks it works on at once."""

    type: Literal["agent.registered"] = "agent.registered"
    name: str
    models: dict[str, str] = Field(default_factory=dict)
    min_complexity: int = Field(default=1, ge=1, le=10)
    max_complexity: int = Field(default=10, ge=1, le=10)
    capacity: int = Field(default=1, ge=1)


class AgentRemoved(Frozen):
    type: Literal["agent.removed"] = "agent.removed"
    name: str


class AgentAssigned(Frozen):
    """In the ``agents`` stream: the agent took the task (it is busy with it until the
    task ends)."""

    type: Literal["agent.assigned"] = "agent.assigned"
    name: str
    task_id: str
    complexity: int


class TaskAssigned(Frozen):
    """In the task's stream: the agent its stages run as, with that agent's models per
    role as they were when it was assigned (empty: the configured models)."""

    type: Literal["task.assigned"] = "task.assigned"
    agent: str
    complexity: int
    models: dict[str, str] = Field(default_factory=dict)


class TaskWaiting(Frozen):
    """No agent could take the task; it waits until one can, and ``reason`` says why."""

    type: Literal["task.waiting"] = "task.waiting"
    complexity: int
    reason: str


class KeyCreated(Frozen):
    """An API key of the server: only its sha256 digest is kept, never the key."""

    type: Literal["key.created"] = "key.created"
    key_id: str
    name: str
    scope: Literal["read", "write", "admin"]
    digest: str


class KeyRevoked(Frozen):
    type: Literal["key.revoked"] = "key.revoked"
    key_id: str


# Distributed mode (``forgeline.transport``): workers' liveness in stream ``workers``, work
# that could not be done in stream ``deadletters``.


class RunningWork(Frozen):
    """One message a worker is handling: a role acting on a task's event."""

    task_id: str
    role: str
    event_type: str
    since: datetime


class WorkerHeartbeat(Frozen):
    """A ``forgeline worker`` is alive (every ``[transport] heartbeat`` seconds)."""

    type: Literal["worker.heartbeat"] = "worker.heartbeat"
    worker: str
    host: str
    pid: int
    roles: tuple[str, ...]
    concurrency: int
    interval: float
    """Seconds until the next heartbeat: a worker not seen for a few of them is lost."""
    running: tuple[RunningWork, ...] = ()
    relay: bool = False
    """It is the active outbox relay."""


class WorkerStopped(Frozen):
    type: Literal["worker.stopped"] = "worker.stopped"
    worker: str
    reason: str


class WorkDeadLettered(Frozen):
    """A role's handling of a task's event raised on every try: it is parked in the
    dead-letter queue until ``forgeline retry``."""

    type: Literal["work.dead_lettered"] = "work.dead_lettered"
    task_id: str
    role: str
    event_id: str
    event_type: str
    position: int
    attempts: int
    error: str
    worker: str


class WorkRetried(Frozen):
    """``forgeline retry`` queued a dead-lettered message again."""

    type: Literal["work.retried"] = "work.retried"
    task_id: str
    role: str
    event_id: str


ToolEventData = (
    ToolSearched | SearchCached | PageFetched | ResearchWritten | GitHubCalled | EmailSent
)


EventData = Annotated[
    TaskInitiated
    | PlanCreated
    | ArchitectureProposed
    | PlanItemDispatched
    | ClarificationRequested
    | ClarificationAnswered
    | PlanItemCompleted
    | CodePrOpened
    | TestResults
    | ReviewDecision
    | DeployStatus
    | SpecDerived
    | CandidateRecorded
    | CandidateChosen
    | ReviewSkipped
    | ToolCommand
    | PackagesSynced
    | StageFailed
    | FixAttempted
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | ContextCompacted
    | TaskAwaitingApproval
    | BudgetApproved
    | LlmUsage
    | LlmCached
    | PreviewStopped
    | StageProgress
    | StageLogged
    | ChangePending
    | ChangeStarted
    | ChangeCompleted
    | ChangeFailed
    | ToolSearched
    | SearchCached
    | PageFetched
    | ResearchWritten
    | GitHubCalled
    | EmailSent
    | AgentRegistered
    | AgentRemoved
    | AgentAssigned
    | TaskAssigned
    | TaskWaiting
    | KeyCreated
    | KeyRevoked
    | WorkerHeartbeat
    | WorkerStopped
    | WorkDeadLettered
    | WorkRetried
    | CycleRecorded
    | CycleCompleted
    | RSITaskCreated
    | RSITaskRejected
    | CTRMUpdate
    | ChangeMerged
    | ChangeDeclined,
    Field(discriminator="type"),
]

DATA_ADAPTER: TypeAdapter[EventData] = TypeAdapter(EventData)


# ----------------------------------------------------------------------- upcasting
#
# A stored payload keeps the shape it was written in. When a payload's shape changes,
# its model gets ``schema_version: Literal[N] = N`` (version 1 has no such field) and an
# upcaster is registered for each older version: a function from the stored dict of
# version n to the dict of version n + 1. ``parse_data`` applies them in turn, so every
# reader sees the current shape and a store written by an older forgeline stays
# readable. The SQL schema has its own migrations in ``store/``; this is the payloads'.

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def _current_versions() -> dict[str, int]:
    """Event type -> the current payload version, for types past version 1."""
    union = get_args(get_args(EventData)[0])
    versions: dict[str, int] = {}
    for model in union:
        field = model.model_fields.get("schema_version")
        if field is not None:
            versions[model.model_fields["type"].default] = field.default
    return versions


PAYLOAD_VERSIONS: dict[str, int] = _current_versions()


def upcaster(event_type: str, version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated function as the upcaster of ``event_type`` payloads stored
    as ``version``: it returns the payload as version ``version + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, version)] = fn
        return fn

    return register


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored payload (a dict) in the current shape of its type."""
    current = PAYLOAD_VERSIONS.get(raw.get("type", ""))
    if current is None:
        return raw
    version = raw.get("schema_version", 1)
    while isinstance(version, int) and version < current:
        raw = {**_UPCASTERS[(raw["type"], version)](dict(raw)), "schema_version": version + 1}
        version += 1
    return raw


@upcaster("task.initiated", 1)
def _task_initiated_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named the task's checkout by its absolute path (``workspace``): the
    repository's worktree ``<repo>/.forgeline/worktrees/<id>``, or before worktrees the
    repository itself. The repository keeps its directory name; the path is kept as it
    was, to be used as it is."""
    path = PurePath(raw.pop("workspace"))
    in_worktree = len(path.parts) > 3 and path.parts[-3:-1] == (".forgeline", "worktrees")
    repository = path.parents[2] if in_worktree else path
    return {**raw, "repository": repository.name or str(repository), "checkout": str(path)}


def parse_data(raw: str | bytes | dict[str, Any]) -> EventData:
    """A stored payload as its current model (upcast first when it is older)."""
    if isinstance(raw, dict):
        return DATA_ADAPTER.validate_python(upcast(raw))
    try:
        data = DATA_ADAPTER.validate_json(raw)
    except ValidationError:
        pass  # perhaps an older shape
    else:
        if data.type not in PAYLOAD_VERSIONS:
            return data  # the common case: a type whose shape never changed
    return DATA_ADAPTER.validate_python(upcast(json.loads(raw)))


def dump_data(data: EventData) -> str:
    return data.model_dump_json()


# ------------------------------------------------------------------------ envelope


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class NewEvent(Frozen):
    """An event a handler wants recorded; the store gives it a version and a position."""

    stream_id: str
    data: EventData
    correlation_id: str
    causation_id: str | None = None
    actor: str
    id: str = Field(default_factory=new_id)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def type(self) -> str:
        return self.data.type


class Event(NewEvent):
    """A recorded event."""

    version: int
    position: int


def task_stream(task_id: str) -> str:
    return f"task-{task_id}"


def change_stream(change_id: str) -> str:
    return f"change-{change_id}"


def task_id_of(stream_id: str) -> str | None:
    return stream_id.removeprefix("task-") if stream_id.startswith("task-") else None


def usage_stream(task_id: str) -> str:
    return f"usage-{task_id}"


def activity_stream(task_id: str) -> str:
    """Where a task's stages record what they are doing (``stage.progress``, ``stage.log``)."""
    return f"activity-{task_id}"


WORKERS_STREAM = "workers"
"""Workers' heartbeats (``worker.heartbeat``, ``worker.stopped``)."""
DEAD_LETTERS_STREAM = "deadletters"
"""Work parked after its retries (``work.dead_lettered``, ``work.retried``)."""


#: The evolution daemon's stream: every cycle of every repository in the store.
EVOLVE_STREAM = "evolve"


def ctrm_stream(change_id: str) -> str:
    """The change tracker's stream of one evolution change."""
    return f"ctrm-{change_id}"
