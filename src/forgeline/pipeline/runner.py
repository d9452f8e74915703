"""Moving work: one ``handle(event, role)`` step, driven two ways.

``Pipeline.handle`` is the unit of work for both modes: fold the task's latest state, skip
if this role already recorded a result for the event, else let the orchestrator decide or
the routed agent work, and record the output (several streams, one transaction).

- Sequential mode (note 001's fallback): ``run_sequential`` walks the task's events in
  order and calls the orchestrator and the routed agent directly.
- Event mode: ``WorkerManager`` (workers.py) runs one worker per role, each fed by its own
  store subscription with a persisted checkpoint.

Because a role's result names its cause, handling an event twice (a crash before the
checkpoint, a mode switch on resume) has one effect, and completed stages never re-run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, cast

from forgeline.core.events import (
    Budget,
    BudgetApproved,
    Event,
    NewEvent,
    PreviewStopped,
    task_id_of,
    task_stream,
)
from forgeline.core.task import (
    ORCHESTRATOR,
    Answer,
    Approve,
    Cancel,
    HandleExecutorEvent,
    Initialize,
    Stage,
    TaskState,
    decide,
    fold,
    next_stage,
)
from forgeline.errors import DuplicateEventError, InvalidRequestError, TaskNotFoundError
from forgeline.pipeline.architect import ArchitectAgent
from forgeline.pipeline.base import Services, StageAgent, load_state
from forgeline.pipeline.coder import CoderAgent
from forgeline.pipeline.deployer import DeployerAgent
from forgeline.pipeline.fixer import FixerAgent
from forgeline.pipeline.planner import PlannerAgent
from forgeline.pipeline.reviewer import ReviewerAgent
from forgeline.pipeline.tester import TesterAgent
from forgeline.sandbox.spawner import stop_process_group
from forgeline.store.base import AppendRequest, EventStore
from forgeline.workspace.git import GitWorkspace

Role = Stage | Literal["orchestrator"]
AGENTS: tuple[type[StageAgent], ...] = (
    PlannerAgent,
    ArchitectAgent,
    CoderAgent,
    TesterAgent,
    FixerAgent,
    ReviewerAgent,
    DeployerAgent,
)
# Which event types can concern each role: lets workers skip the rest without a read.
INTERESTS: dict[str, frozenset[str]] = {
    "planner": frozenset({"task.initiated"}),
    "architect": frozenset({"plan.created"}),
    "coder": frozenset({"plan.item.dispatched", "review.decision"}),
    "tester": frozenset({"code.pr.opened"}),
    "fixer": frozenset({"test.results"}),
    "reviewer": frozenset({"test.results"}),
    "deployer": frozenset({"review.decision"}),
}
for _role in ("planner", "architect", "coder", "fixer", "reviewer"):
    INTERESTS[_role] |= {"budget.approved"}

Until = Callable[[TaskState], bool]


def settled(state: TaskState) -> bool:
    """The task needs nobody but a person now: finished, or waiting for an answer or for
    a budget approval."""
    return state.terminal or state.status in ("needs_clarification", "awaiting_approval")


def new_task_id() -> str:
    return uuid.uuid4().hex[:12]


def worktree_path(repository: GitWorkspace, task_id: str) -> Path:
    return repository.path / ".forgeline" / "worktrees" / task_id


class Pipeline:
    def __init__(
        self, services: Services, agents: Mapping[Stage, StageAgent] | None = None
    ) -> None:
        self.services = services
        self.agents: dict[Stage, StageAgent] = dict(
            agents or {cls.stage: cls(services) for cls in AGENTS}
        )

    @property
    def store(self) -> EventStore:
        return self.services.store

    def concerns(self, role: Role, event: Event) -> bool:
        if task_id_of(event.stream_id) is None:
            return False
        return role == ORCHESTRATOR or event.type in INTERESTS[role]

    async def state(self, task_id: str) -> TaskState:
        state = await load_state(self.store, task_id)
        if state.status == "new":
            raise TaskNotFoundError(task_id)
        return state

    # ------------------------------------------------------------------ commands

    async def submit(self, request: str, workspace: GitWorkspace) -> str:
        """Start a task: a worktree on branch ``forgeline/<id>`` (under the repository's
        ``.forgeline/worktrees/``) from the repository's HEAD, and the request recorded."""
        if not request.strip():
            raise InvalidRequestError("the request is empty: say what to build")
        await workspace.ensure()
        task_id = new_task_id()
        branch = f"forgeline/{task_id}"
        worktree, base = await workspace.add_worktree(branch, worktree_path(workspace, task_id))
        settings = self.services.settings
        command = Initialize(
            task_id=task_id,
            request=request,
            workspace=str(worktree.path),
            branch=branch,
            base_commit=base,
            max_fix_rounds=settings.max_fix_rounds,
            max_review_rounds=settings.max_review_rounds,
            budget=settings.budget,
            at=self.services.clock(),
        )
        events = decide(TaskState(task_id=task_id), command)
        await self.store.append(task_stream(task_id), events, expected_version=0)
        return task_id

    async def answer(self, task_id: str, answer: str) -> None:
        """Record the user's answer to the task's open clarification question."""
        state = await self.state(task_id)
        events = decide(state, Answer(answer=answer, at=self.services.clock()))
        await self.store.append(task_stream(task_id), events)

    async def approve(self, task_id: str, budget: Budget) -> None:
        """Raise a paused task's budget; its paused stages then run again."""
        state = await self.state(task_id)
        events = decide(state, Approve(budget=budget, at=self.services.clock()))
        await self.store.append(task_stream(task_id), events)

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> None:
        state = await self.state(task_id)
        events = decide(state, Cancel(reason=reason, at=self.services.clock()))
        await self.store.append(task_stream(task_id), events)
        await self.stop_preview(task_id)

    async def recover(self, task_id: str) -> TaskState:
        """Before resuming: put the workspace back at the last recorded commit."""
        state = await self.state(task_id)
        if not state.terminal:
            await GitWorkspace(Path(state.workspace)).reset_to(state.branch, state.head)
        return state

    async def stop_preview(self, task_id: str) -> int | None:
        """Stop the task's web preview (started here or by another process)."""
        pid = (await self.state(task_id)).preview_pid
        if pid is None:
            return None
        process = self.services.previews.pop(task_id, None)
        if process is not None and process.pid == pid:
            await process.stop()
        else:
            await asyncio.to_thread(stop_process_group, pid)
        stop = NewEvent(
            stream_id=task_stream(task_id),
            data=PreviewStopped(pid=pid),
            correlation_id=task_id,
            actor="deployer",
            created_at=self.services.clock(),
        )
        await self.store.append(task_stream(task_id), [stop])
        return pid

    # --------------------------------------------------------------------- work

    async def handle(
        self, event: Event, role: Role | None, *, checkpoint: tuple[str, int] | None = None
    ) -> list[Event]:
        """Let ``role`` act on ``event`` once (``None``: whichever stage the event is routed
        to); return what was recorded."""
        task_id = task_id_of(event.stream_id)
        if task_id is None:
            return []
        history = await self.store.read_stream(event.stream_id)
        state = fold(task_id, history)
        if isinstance(event.data, BudgetApproved):
            return await self._resume(state, history, event, role, checkpoint)
        stage = next_stage(state, event)
        actor = role or stage
        if actor is None or any(e.causation_id == event.id and e.actor == actor for e in history):
            return []  # nobody's, or done before (a crash, a resume, a second worker)
        out: list[NewEvent]
        if actor == ORCHESTRATOR:
            out = decide(state, HandleExecutorEvent(event=event, at=self.services.clock()))
        elif actor == stage:
            out = await self.agents[stage].process_direct(state, event)
        else:
            return []
        return await self.record(out, checkpoint)

    async def _resume(
        self,
        state: TaskState,
        history: list[Event],
        approval: Event,
        role: Role | None,
        checkpoint: tuple[str, int] | None,
    ) -> list[Event]:
        """After ``forgeline approve``: re-run each paused stage on its own trigger."""
        assert isinstance(approval.data, BudgetApproved)
        out: list[NewEvent] = []
        by_id = {e.id: e for e in history}
        for resume in approval.data.resumes:
            stage = cast(Stage, resume.stage)
            trigger = by_id.get(resume.trigger_id)
            if state.terminal or trigger is None or role not in (None, stage):
                continue
            if any(
                e.causation_id in (trigger.id, approval.id)
                and e.actor == stage
                and e.type != "task.awaiting_approval"
                for e in history
            ):
                continue  # resumed before (a crash after recording, a second worker)
            out += await self.agents[stage].process_direct(state, trigger, cause=approval)
        return await self.record(out, checkpoint)

    async def record(
        self, events: list[NewEvent], checkpoint: tuple[str, int] | None = None
    ) -> list[Event]:
        groups: dict[str, list[NewEvent]] = {}
        for event in events:
            groups.setdefault(event.stream_id, []).append(event)
        requests = [AppendRequest(stream, tuple(evs)) for stream, evs in groups.items()]
        if checkpoint is not None:
            if not requests:
                await self.store.save_checkpoint(*checkpoint)
                return []
            first = requests[0]
            requests[0] = AppendRequest(first.stream_id, first.events, checkpoint=checkpoint)
        if not requests:
            return []
        try:
            recorded = await self.store.append_batch(requests)
        except DuplicateEventError:
            return []  # another run recorded this effect first
        return [e for group in recorded for e in group]

    async def run_sequential(
        self, task_id: str, until: Until = settled, stop: asyncio.Event | None = None
    ) -> TaskState:
        """Drive the task by direct calls until ``until(state)``, nothing is left to do, or
        ``stop`` is set (the step in progress finishes first)."""
        stream = task_stream(task_id)
        seen = 0
        while stop is None or not stop.is_set():
            events = await self.store.read_stream(stream, after_version=seen)
            if not events:
                return await self.state(task_id)
            for event in events:
                if stop is not None and stop.is_set():
                    break
                await self.handle(event, ORCHESTRATOR)
                await self.handle(event, None)
                seen = event.version
            if until(state := await self.state(task_id)):
                return state
        return await self.state(task_id)
