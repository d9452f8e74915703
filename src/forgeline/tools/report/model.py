"""What a task report shows, read from the task's events (and its git diff, when the
worktree is still there). The PDF, the HTML page, the pull request's body and the e-mail
all render this one ``TaskReport``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from forgeline.core.events import Event, LlmUsage, task_stream, usage_stream
from forgeline.core.reactions import STAGES
from forgeline.core.task import TaskState, fold
from forgeline.errors import ForgelineError, TaskNotFoundError
from forgeline.llm.metered import UsageRow, usage_rows
from forgeline.store.base import EventStore
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.layout import Workspaces

__all__ = ["FileChange", "StageCost", "TaskReport", "load_report", "stage_costs"]


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int | None = None
    deleted: int | None = None
    """None: unknown (a binary file, or the worktree is gone)."""


@dataclass(frozen=True)
class StageCost:
    stage: str
    seconds: float
    tokens: int
    runs: int


@dataclass(frozen=True)
class TaskReport:
    state: TaskState
    created_at: datetime | None
    finished_at: datetime | None
    changes: tuple[FileChange, ...] = ()
    usage: tuple[UsageRow, ...] = ()
    stages: tuple[StageCost, ...] = ()
    commits: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    worktree: Path | None = None
    """The task's checkout on this machine, when it is known and still there."""

    @property
    def task_id(self) -> str:
        return self.state.task_id

    @property
    def total(self) -> UsageRow | None:
        return self.usage[-1] if self.usage else None

    def test_summary(self) -> str:
        test = self.state.last_test
        if test is None:
            return "no tests were run"
        text = f"{test.passed} passed, {test.failed} failed, {test.errors} errors"
        if test.skipped:
            text += f", {test.skipped} skipped"
        return text + (" (timed out)" if test.timed_out else "")

    def usage_summary(self) -> str:
        total = self.total
        if total is None:
            return "no model calls"
        return (
            f"{total.calls} model calls ({total.cache_hits} from the cache), "
            f"{total.input_tokens:,} input + {total.output_tokens:,} output tokens, "
            f"${total.cost_usd:.4f}"
        )

    def review_summary(self) -> str:
        review = self.state.last_review
        if review is None:
            return "not reviewed"
        return "approved" if review.approved else "changes requested"

    def deploy_summary(self) -> str:
        deploy = self.state.deploy
        if deploy is None:
            return "not deployed"
        text = f"{deploy.kind} {'ok' if deploy.ok else 'failed'}"
        return text + (f" at {deploy.url}" if deploy.url else "")


def stage_costs(events: list[Event], usage: list[Event]) -> list[StageCost]:
    """Time and tokens per stage: a stage's time is from the event that triggered it to
    the event it recorded (summed over its runs); its tokens are its role's model calls."""
    by_id = {event.id: event for event in events}
    seconds: dict[str, float] = defaultdict(float)
    runs: dict[str, int] = defaultdict(int)
    for event in events:
        trigger = by_id.get(event.causation_id or "")
        if event.actor not in STAGES or trigger is None or event.type.startswith("tool."):
            continue
        seconds[event.actor] += max((event.created_at - trigger.created_at).total_seconds(), 0)
        runs[event.actor] += 1
    tokens: dict[str, int] = defaultdict(int)
    for event in usage:
        if isinstance(event.data, LlmUsage) and not event.data.cache_hit:
            tokens[event.data.role] += event.data.input_tokens + event.data.output_tokens
    return [
        StageCost(stage, round(seconds[stage], 3), tokens[stage], runs[stage])
        for stage in STAGES
        if stage in runs or stage in tokens
    ]


async def _changes(
    state: TaskState, worktree: Path | None
) -> tuple[list[FileChange], list[tuple[str, str]]]:
    if worktree is None or not state.base_commit or state.head == state.base_commit:
        return [FileChange(path) for path in state.files], []
    workspace = GitWorkspace(worktree)
    try:
        numstat = await workspace.git("diff", "--numstat", state.base_commit, state.head)
        commits = await workspace.log(state.base_commit, state.head)
    except ForgelineError:  # the worktree or its commits are gone
        return [FileChange(path) for path in state.files], []
    changes = []
    for line in numstat.splitlines():
        added, deleted, path = line.split("\t", 2)
        changes.append(
            FileChange(
                path,
                int(added) if added.isdigit() else None,
                int(deleted) if deleted.isdigit() else None,
            )
        )
    return changes, commits


async def load_report(
    store: EventStore,
    task_id: str,
    workspaces: Workspaces | None = None,
    *,
    until_version: int | None = None,
) -> TaskReport:
    """The task's report from its events (up to ``until_version``: the task as it was
    then); with ``workspaces``, its changes and commits are read from its worktree too."""
    events = await store.read_stream(task_stream(task_id))
    if not events:
        raise TaskNotFoundError(task_id)
    if until_version is not None:
        events = [event for event in events if event.version <= until_version]
    usage = await store.read_stream(usage_stream(task_id))
    if until_version is not None:
        usage = [event for event in usage if event.created_at <= events[-1].created_at]
    state = fold(task_id, events)
    worktree = workspaces.worktree(state).path if workspaces is not None else None
    if worktree is not None and not worktree.is_dir():
        worktree = None
    changes, commits = await _changes(state, worktree)
    return TaskReport(
        state=state,
        created_at=events[0].created_at,
        finished_at=events[-1].created_at if state.terminal else None,
        changes=tuple(changes),
        usage=tuple(usage_rows(task_id, usage)),
        stages=tuple(stage_costs(events, usage)),
        commits=tuple(commits),
        worktree=worktree,
    )
