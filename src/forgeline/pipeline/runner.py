"""Moving work: one ``handle(event, role)`` step, driven two ways.

``Pipeline.handle`` is the unit of work for both modes: fold the task's latest state, skip
if this role already recorded a result for the event, else let the orchestrator decide or
the routed agent work, and record the output (several streams, one transaction).

- Sequential mode (note 001's fallback): ``run_sequential`` walks the task's events in
  order and calls the orchestrator and the routed agent directly.
- Event mode: ``WorkerManager`` (workers.py) runs one worker per role, each fed by its own
  store subscription with a persisted checkpoint.

Which role acts on an event comes from the reaction table (``core/reactions.py``); which
of the modes runs a task is the runtime's ``Execution`` (``execution.py``).

Because a role's result names its cause, handling an event twice (a crash before the
checkpoint, a mode switch on resume) has one effect, and completed stages never re-run.

The orchestrator's reaction to an event is a pure ``decide`` over the folded state, so a
stage records it together with its result: ``record`` folds the result onto the task's
state, lets the orchestrator decide (and react to its own decisions), and appends it all
in one transaction that expects the stream to be at the version the state was folded at.
Should the stream have moved on, the state is read again and the decision made again; so
every orchestration event is decided on the exact state it follows. The orchestrator's
worker then finds the reaction recorded (the causation guard) and does nothing.

Folded states are kept per task (``Pipeline._states``) with the last event folded into
them; a handler reads the stream (the store asks the database only for newer versions)
and folds just the events it has not seen.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

from forgeline.core.events import (
    Budget,
    BudgetApproved,
    Event,
    NewEvent,
    PreviewStopped,
    task_id_of,
    task_stream,
)
from forgeline.core.reactions import (
    INTERESTS,
    ORCHESTRATOR,
    Role,
    Stage,
    orchestrator_reacts,
    reacting_stages,
)
from forgeline.core.task import (
    Answer,
    Approve,
    Cancel,
    Initialize,
    React,
    TaskState,
    decide,
    evolve,
    fold,
    next_stage,
    settled,
)
from forgeline.errors import (
    ConcurrencyError,
    DuplicateEventError,
    ForgelineError,
    InvalidRequestError,
    TaskNotFoundError,
)
from forgeline.pipeline.architect import ArchitectAgent
from forgeline.pipeline.base import Services, StageAgent
from forgeline.pipeline.coder import CoderAgent
from forgeline.pipeline.deployer import DeployerAgent
from forgeline.pipeline.fixer import FixerAgent
from forgeline.pipeline.planner import PlannerAgent
from forgeline.pipeline.reviewer import ReviewerAgent
from forgeline.pipeline.tester import TesterAgent
from forgeline.runs import preview_record
from forgeline.store.base import AppendRequest, EventStore, recorded_event

AGENTS: tuple[type[StageAgent], ...] = (
    PlannerAgent,
    ArchitectAgent,
    CoderAgent,
    TesterAgent,
    FixerAgent,
    ReviewerAgent,
    DeployerAgent,
)

Until = Callable[[TaskState], bool]


class StageInterrupted(ForgelineError):
    """A stage's work for a task was stopped (``Pipeline.interrupt``); nothing of it was
    recorded, and the event it was handling is handled again on the next start."""


class _StageRun:
    """A stage run in flight: the asyncio task running it, and whether it was told to
    stop."""

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.interrupted = False
        self.done = asyncio.Event()


def new_task_id() -> str:
    return uuid.uuid4().hex[:12]


class Pipeline:
    cached_states = 32768
    """How many tasks' folded states are kept (least recently used go first)."""
    reaction_limit = 32
    """How many orchestrator decisions ``record`` makes in one transaction at most; the
    orchestrator's worker takes over from there."""
    attempts = 8
    """How often a record that expects a stream version is tried on a fresh state."""

    def __init__(
        self, services: Services, agents: Mapping[Stage, StageAgent] | None = None
    ) -> None:
        self.services = services
        self.agents: dict[Stage, StageAgent] = dict(
            agents or {cls.stage: cls(services) for cls in AGENTS}
        )
        self._states: OrderedDict[str, tuple[TaskState, str]] = OrderedDict()
        """Per task: its folded state and the id of the last event folded into it."""
        self._running: dict[str, list[_StageRun]] = {}
        """Per task: the stage runs in flight in this process (see ``interrupt``)."""

    @property
    def store(self) -> EventStore:
        return self.services.store

    def concerns(self, role: Role, event: Event) -> bool:
        """Whether ``role`` may act on ``event`` in some state (``core.reactions``): a
        worker skips the rest without reading the task."""
        if event.data.type not in INTERESTS[role]:
            return False  # the cheap test first: most events are not this role's
        if task_id_of(event.stream_id) is None:
            return False
        if role == ORCHESTRATOR:
            return orchestrator_reacts(event.data)
        return role in reacting_stages(event.data)

    async def state(self, task_id: str) -> TaskState:
        state, _ = await self._latest(task_id)
        if state.status == "new":
            raise TaskNotFoundError(task_id)
        return state

    async def _latest(self, task_id: str) -> tuple[TaskState, list[Event]]:
        """The task's events and its state folded over all of them."""
        history = await self.store.read_stream(task_stream(task_id))
        return self._fold(task_id, history), history

    def _fold(self, task_id: str, history: Sequence[Event]) -> TaskState:
        """``fold(task_id, history)``, starting from the state kept for the task when it
        is a prefix of ``history`` (its last event is where ``history`` has it)."""
        state: TaskState | None = None
        cached = self._states.get(task_id)
        if cached is not None:
            state, last = cached
            known = state.version
            if known > len(history) or history[known - 1].id != last:
                state = None  # not a prefix: another store, or a stream rewritten in tests
        if state is None:
            state = fold(task_id, history)
        else:
            for event in history[state.version :]:
                state = evolve(state, event)
        if history:
            self._keep(task_id, state, history[-1].id)
        return state

    def _keep(self, task_id: str, state: TaskState, last_id: str) -> None:
        self._states[task_id] = (state, last_id)
        self._states.move_to_end(task_id)
        while len(self._states) > self.cached_states:
            self._states.popitem(last=False)

    # ------------------------------------------------------------------ commands

    async def submit(
        self,
        request: str,
        repository: str | Path,
        *,
        max_fix_rounds: int | None = None,
        max_review_rounds: int | None = None,
        budget: Budget | None = None,
        task_id: str | None = None,
        base: str | None = None,
    ) -> str:
        """Record a new task on ``repository`` (a name under the workspaces root, or a
        path inside it; created if absent) and return its id. Limits not given come from
        the settings. Its worktree is made on branch ``forgeline/<id>`` from ``base`` (a
        commit; default the repository's HEAD); nothing runs yet (that is an
        ``Execution``'s job). ``task_id``: the id to use instead of a new one (a caller
        that must not submit twice, the evolution daemon)."""
        if not request.strip():
            raise InvalidRequestError("the request is empty: say what to build")
        workspaces = self.services.workspaces
        name = workspaces.name_of(repository)
        repo = workspaces.repository(name)
        await repo.ensure()
        settings = self.services.settings
        task_id = task_id or new_task_id()
        branch = f"forgeline/{task_id}"
        command = Initialize(
            task_id=task_id,
            request=request,
            repository=name,
            branch=branch,
            base_commit=base or await repo.head(),
            max_fix_rounds=(settings.max_fix_rounds if max_fix_rounds is None else max_fix_rounds),
            max_review_rounds=(
                settings.max_review_rounds if max_review_rounds is None else max_review_rounds
            ),
            budget=settings.budget if budget is None else budget,
            at=self.services.clock(),
        )
        events = decide(TaskState(task_id=task_id), command)  # validates before any change
        path = workspaces.worktree_path(name, task_id)
        await repo.add_worktree(branch, path, command.base_commit)
        try:
            await self.store.append(task_stream(task_id), events, expected_version=0)
        except Exception:  # not recorded (a cancelled append may still be: kept then)
            await repo.remove_worktree(branch, path)  # no worktree that no task owns
            raise
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
        """Record ``task.cancelled``, stop the task's stage runs in this process (nothing
        they would record is recorded) and its web preview."""
        state = await self.state(task_id)
        events = decide(state, Cancel(reason=reason, at=self.services.clock()))
        await self.store.append(task_stream(task_id), events)
        await self.interrupt(task_id)
        await self.stop_preview(task_id)

    async def interrupt(self, task_id: str) -> int:
        """Stop the task's stage runs in flight in this process and wait until they have
        stopped; return how many there were. Nothing an interrupted run would have
        recorded is recorded: ``handle`` raises ``StageInterrupted`` instead, so a worker
        leaves the event unacknowledged and the next start handles it again.

        This is the hook for stopping work promptly: ``cancel`` calls it here; Ctrl-C
        (and a cancel recorded by another process, seen by the runtime's drive loop) can
        call it before draining. A stage's processes in the sandbox are killed when its
        run is cancelled (the spawner kills the group); a model call is abandoned."""
        runs = list(self._running.get(task_id, ()))
        for run in runs:
            run.interrupted = True
            run.task.cancel()
        for run in runs:
            await run.done.wait()
        return len(runs)

    async def recover(self, task_id: str) -> TaskState:
        """Before resuming: put the worktree back at the last recorded commit."""
        state = await self.state(task_id)
        if not state.terminal:
            worktree = self.services.workspaces.worktree(state)
            async with worktree.lock:
                await worktree.reset_to(state.branch, state.head)
        return state

    async def stop_preview(self, task_id: str) -> int | None:
        """Stop the task's web preview (started here or by another process); the pid that
        was stopped, or None if none was running."""
        state = await self.state(task_id)
        pid = state.preview_pid
        if pid is None:
            return None
        preview_id = state.deploy.preview_id if state.deploy is not None else None
        process = self.services.previews.pop(task_id, None)
        stopped = await preview_record.stop_preview(
            self.services.workspaces.worktree(state).path, task_id, preview_id, process
        )
        stop = NewEvent(
            stream_id=task_stream(task_id),
            data=PreviewStopped(pid=pid, preview_id=preview_id),
            correlation_id=task_id,
            actor="deployer",
            created_at=self.services.clock(),
        )
        await self.store.append(task_stream(task_id), [stop])
        return stopped

    # --------------------------------------------------------------------- work

    async def handle(
        self, event: Event, role: Role | None, *, checkpoint: tuple[str, int] | None = None
    ) -> list[Event]:
        """Let ``role`` act on ``event`` once (``None``: whichever stage the event is routed
        to); return what was recorded."""
        task_id = task_id_of(event.stream_id)
        if task_id is None:
            return []
        if role == ORCHESTRATOR and not orchestrator_reacts(event.data):
            return await self.record([], checkpoint)  # decide never reacts to it
        for _ in range(self.attempts):
            state, history = await self._latest(task_id)
            if isinstance(event.data, BudgetApproved):
                return await self._resume(state, history, event, role, checkpoint)
            stage = next_stage(state, event)
            actor = role or stage
            if actor is None or any(
                e.causation_id == event.id and e.actor == actor for e in history
            ):
                return []  # nobody's, or done before (a crash, a resume, a second worker)
            if actor == ORCHESTRATOR:
                out = decide(state, React(event=event, at=self.services.clock()))
                try:
                    return await self.record(out, checkpoint, state=state)
                except ConcurrencyError:
                    continue  # the task moved on meanwhile: decide on its latest state
            if actor != stage:
                return []
            out = await self._work(stage, state, event)
            return await self._record_result(state, out, checkpoint)
        # Still racing other writers of this task after every attempt: record the last
        # decision without the version check (as every decision was recorded once).
        return await self.record(out, checkpoint)

    async def _record_result(
        self, state: TaskState, out: list[NewEvent], checkpoint: tuple[str, int] | None
    ) -> list[Event]:
        """Record a stage's output with the orchestrator's reaction to it, retrying on the
        task's latest state if it moved on; at last without the reaction (the
        orchestrator's worker reacts then)."""
        for _ in range(self.attempts):
            try:
                return await self.record(out, checkpoint, state=state)
            except ConcurrencyError:
                state, _ = await self._latest(state.task_id)
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
            out += await self._work(stage, state, trigger, cause=approval)
        return await self.record(out, checkpoint)

    async def _work(
        self, stage: Stage, state: TaskState, trigger: Event, cause: Event | None = None
    ) -> list[NewEvent]:
        """The stage's run on ``trigger``, registered so that ``interrupt`` can stop it (by
        cancelling the task running it, which goes on with ``StageInterrupted``; a task
        of its own per run would cost a scheduling step on every stage)."""
        current = asyncio.current_task()
        assert current is not None
        run = _StageRun(current)
        runs = self._running.setdefault(state.task_id, [])
        runs.append(run)
        try:
            out = await self.agents[stage].process_direct(state, trigger, cause=cause)
        except asyncio.CancelledError:
            if run.interrupted and current.uncancel() == 0:
                raise StageInterrupted(f"{stage} was interrupted on {trigger.type}") from None
            raise  # (also) cancelled by someone else
        finally:
            runs.remove(run)
            if not runs:
                self._running.pop(state.task_id, None)
            run.done.set()
        if run.interrupted:  # it finished before the cancellation reached it
            if current.cancelling():
                current.uncancel()
            raise StageInterrupted(f"{stage} was interrupted on {trigger.type}")
        return out

    def reactions(
        self, state: TaskState, events: Sequence[NewEvent]
    ) -> tuple[list[NewEvent], TaskState]:
        """What the orchestrator decides about ``events`` once they follow ``state`` (the
        task's latest state), and about its own decisions in turn, as its worker would
        decide one event after another on the then latest state; and the state after
        all of them."""
        stream = task_stream(state.task_id)
        version = state.version
        pending: deque[Event] = deque()
        for event in events:
            if event.stream_id == stream:
                version += 1
                pending.append(recorded_event(event, version, 0))
        for recorded in pending:
            state = evolve(state, recorded)
        out: list[NewEvent] = []
        at = self.services.clock()
        decided = 0
        while pending and decided < self.reaction_limit:
            trigger = pending.popleft()
            if not orchestrator_reacts(trigger.data):
                continue
            decided += 1
            for reaction in decide(state, React(event=trigger, at=at)):
                version += 1
                recorded = recorded_event(reaction, version, 0)
                state = evolve(state, recorded)
                pending.append(recorded)
                out.append(reaction)
        return out, state

    async def record(
        self,
        events: list[NewEvent],
        checkpoint: tuple[str, int] | None = None,
        *,
        state: TaskState | None = None,
    ) -> list[Event]:
        """Record ``events`` (several streams, one transaction).

        With ``state`` (the task's latest state, which ``events`` follow), the
        orchestrator's reactions are recorded with them; and if any orchestration event
        is among them, the append expects the task stream still at ``state.version``,
        else it raises ``ConcurrencyError`` and writes nothing: decide again on the
        latest state. So no decision is recorded on a state it does not follow."""
        expected: int | None = None
        task = after = None
        if state is not None:
            task = task_stream(state.task_id)
            more, after = self.reactions(state, events)
            events = [*events, *more]
            if any(e.actor == ORCHESTRATOR and e.stream_id == task for e in events):
                expected = state.version
        groups: dict[str, list[NewEvent]] = {}
        for event in events:
            groups.setdefault(event.stream_id, []).append(event)
        requests = [
            AppendRequest(stream, tuple(evs), expected if stream == task else None)
            for stream, evs in groups.items()
        ]
        if checkpoint is not None:
            if not requests:
                await self.store.save_checkpoint(*checkpoint)
                return []
            first = requests[0]
            requests[0] = AppendRequest(
                first.stream_id, first.events, first.expected_version, checkpoint
            )
        if not requests:
            return []
        try:
            recorded = await self.store.append_batch(requests)
        except DuplicateEventError:
            return []  # another run recorded this effect first
        given = {e.id: e.data for e in events}
        as_given = all(r.data is given[r.id] for group in recorded for r in group)
        if state is not None and after is not None and as_given:  # not redacted by the store
            for group in recorded:
                if group and group[0].stream_id == task and group[0].version == state.version + 1:
                    # recorded right behind ``state``: ``after`` is their fold already
                    self._keep(state.task_id, after, group[-1].id)
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
                try:
                    await self.handle(event, None)
                except StageInterrupted:
                    return await self.state(task_id)  # stopped on purpose (``interrupt``)
                seen = event.version
            if until(state := await self.state(task_id)):
                return state
        return await self.state(task_id)
