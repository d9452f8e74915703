"""What every stage agent shares: the services it uses and how one stage run goes.

``process_direct(state, trigger)`` does the work with the state it is given (the runner
folds it, in every mode) and returns the events to record; the runner records them, so
an agent never appends its own result (only the opening steps of a tracked change).

Anything an agent raises on purpose (``ForgelineError``) or a model that keeps answering
badly (pydantic-ai's ``AgentRunError``) becomes a ``stage.failed`` event with the reason,
and an open change is marked failed with the error log.
"""

from __future__ import annotations

import logging
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from pydantic_ai import Agent
from pydantic_ai.capabilities import ProcessHistory
from pydantic_ai.exceptions import AgentRunError, ModelAPIError
from pydantic_ai.models import Model

from forgeline.config import ModelRole, Profile, Settings
from forgeline.core import changes
from forgeline.core.events import (
    ChangeCompleted,
    ChangeFailed,
    ChangePending,
    ChangeStarted,
    ContextCompacted,
    Event,
    EventData,
    NewEvent,
    PackagesSynced,
    PlanItemDispatched,
    StageFailed,
    TaskAwaitingApproval,
    change_stream,
    utcnow,
)
from forgeline.core.reactions import Stage
from forgeline.core.task import TaskState
from forgeline.errors import DuplicateEventError, ForgelineError
from forgeline.llm.failures import provider_failure
from forgeline.llm.gateway import ModelRegistry
from forgeline.llm.metered import BudgetExceeded, Compactor, Meter, merged_compaction
from forgeline.observability.logs import bind_task
from forgeline.observability.progress import Activity
from forgeline.observability.tracing import Tracing
from forgeline.pipeline.commands import StageCommands
from forgeline.sandbox.spawner import ProcessSpawner, SpawnedProcess
from forgeline.store.base import EventStore
from forgeline.tools.terminal import Terminal, command_events
from forgeline.tools.toolkit import Toolkit
from forgeline.workspace.declared import read_declaration
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.layout import Workspaces
from forgeline.workspace.sync import PackageSync
from forgeline.workspace.venv import WorkspaceVenv, repository_root, task_venv

log = logging.getLogger(__name__)

#: Events a run records beside its result (what the span's outcome is not).
_ASIDE = ("context.", "tool.", "change.", "stage.log")


@dataclass
class Services:
    """What the stages use. ``forgeline.runtime.open_runtime`` builds them for a run;
    tests of one stage may build their own."""

    store: EventStore
    settings: Settings
    spawner: ProcessSpawner
    models: ModelRegistry
    workspaces: Workspaces
    clock: Callable[[], datetime] = utcnow
    previews: dict[str, SpawnedProcess] = field(default_factory=dict)
    """Web previews this process started, by task id."""
    escalates: Callable[[Exception], bool] = field(default=lambda exc: False)
    """Whether a stage raises this error for its execution to retry later instead of
    recording ``stage.failed`` (the broker's workers: transient failures and internal
    errors, ``transport.failures``); embedded, every error is recorded."""
    tracing: Tracing = field(default_factory=Tracing)
    """Spans per stage, model and tool call (``[telemetry]``; a no-op by default)."""


_current_run: ContextVar[StageRun] = ContextVar("forgeline_stage_run")


class StageRun:
    """One execution of a stage for one trigger event: builds its output events.

    ``cause`` is the event being handled: the trigger itself, or the budget approval that
    resumes a paused stage on its old trigger.
    """

    def __init__(
        self, agent: StageAgent, state: TaskState, trigger: Event, cause: Event | None = None
    ) -> None:
        self.agent = agent
        self.state = state
        self.trigger = trigger
        self.cause = cause or trigger
        self.change: changes.ChangeState | None = None
        self.compactions: list[ContextCompacted] = []
        self.meters: dict[ModelRole, Meter] = {}
        item = trigger.data.item_id if isinstance(trigger.data, PlanItemDispatched) else None
        self.activity = Activity(
            agent.services.store,
            task_id=state.task_id,
            stage=agent.stage,
            trigger_id=trigger.id,
            item_id=item,
            item_title=state.items[item].item.title if item in state.items else None,
            interval=agent.services.settings.progress_interval,
            clock=agent.services.clock,
        )
        self.commands: StageCommands | None = None
        """The terminal of this run, once a model got it (``terminal``)."""
        services = agent.services
        self.tools = Toolkit(services.settings, services.store)
        """The run's web tools; their calls are recorded with its result."""
        self.synced: list[PackagesSynced] = []

    @cached_property
    def models(self) -> ModelRegistry:
        """The models this run's roles use: the task's agent's chains (``task.assigned``)
        over the configured ones."""
        return self.agent.services.models.with_chains(self.state.models)

    @cached_property
    def workspace(self) -> GitWorkspace:
        """The task's worktree, built on first use (resolving its path touches the disk,
        and a stage that records its result without git never needs it)."""
        return self.agent.services.workspaces.worktree(self.state)

    @cached_property
    def tier(self) -> tuple[str, Profile]:
        """The task's model tier (``[profiles.NAME]``): the one its spec recorded, else
        the one the coder's model chain gets now."""
        services = self.agent.services
        settings = services.settings
        if self.state.spec is not None and self.state.spec.tier in settings.profiles:
            return self.state.spec.tier, settings.profiles[self.state.spec.tier]
        return settings.tier(services.models.spec("coder"))

    async def venv(self) -> WorkspaceVenv | None:
        """The task's own venv for running its code, synced to the packages the worktree
        declares now (``workspace.sync``: a ``PackageError`` says why it cannot be); None
        with ``workspace_venv = false``. A sync that changed the venv is recorded with the
        run's result (``package_events``)."""
        services = self.agent.services
        if not services.settings.workspace_venv:
            return None
        path = self.workspace.path
        venv = await task_venv(await repository_root(path), self.state.task_id)
        installer = PackageSync(services.settings.packages, services.spawner)
        synced = await installer.sync(venv, read_declaration(path), cwd=path)
        if synced is not None:
            self.synced.append(synced)
        return venv

    def package_events(self) -> list[NewEvent]:
        """One ``packages.synced`` per sync that changed the venv, in order: the first
        caused by the trigger, each next by the one before (one event of a type per
        cause)."""
        events: list[NewEvent] = []
        for synced in self.synced:
            event = self.event(synced)
            if events:
                event = event.model_copy(update={"causation_id": events[-1].id})
            events.append(event)
        return events

    def meter(self, role: ModelRole) -> Meter:
        if role not in self.meters:
            services = self.agent.services
            settings = services.settings
            self.meters[role] = Meter(
                store=services.store,
                task_id=self.state.task_id,
                role=role,
                budget=self.state.budget,
                prices=settings.prices,
                cache=settings.cache,
                loop_limit=settings.loop_limit,
                clock=services.clock,
            )
        return self.meters[role]

    async def terminal(self) -> StageCommands:
        """This run's bounded terminal in the task's worktree (made on first use)."""
        if self.commands is None:
            settings = self.agent.services.settings
            terminal = Terminal(
                self.workspace.path,
                self.agent.services.spawner,
                settings.terminal,
                venv=await self.venv(),
            )
            self.commands = StageCommands(terminal, self.tier[1])
        return self.commands

    @property
    def commands_ran(self) -> bool:
        return self.commands is not None and bool(self.commands.commands)

    def command_events(self) -> list[NewEvent]:
        """A ``tool.command`` per command this run ran or refused, chained from its cause."""
        if self.commands is None:
            return []
        return command_events(
            self.commands.commands,
            stream_id=self.trigger.stream_id,
            correlation_id=self.state.task_id,
            causation_id=self.cause.id,
            actor=self.agent.stage,
            created_at=self.now,
        )

    def context_events(self) -> list[NewEvent]:
        """What compaction dropped during this run, one ``context.compacted`` event."""
        merged = merged_compaction(self.compactions)
        return [] if merged is None else [self.event(merged)]

    def tool_events(self) -> list[NewEvent]:
        """The run's tool calls, as ``tool.*`` events chained from its trigger."""
        return self.tools.calls.events(
            stream_id=self.trigger.stream_id,
            correlation_id=self.state.task_id,
            causation_id=self.trigger.id,
            actor=self.agent.stage,
            created_at=self.now,
        )

    def paused(self, exc: BudgetExceeded) -> list[NewEvent]:
        pause = TaskAwaitingApproval(
            stage=self.agent.stage,
            trigger_id=self.trigger.id,
            reason=str(exc),
            spent_tokens=exc.spent_tokens,
            spent_usd=exc.spent_usd,
        )
        return [self.event(pause).model_copy(update={"causation_id": self.cause.id})]

    @property
    def now(self) -> datetime:
        return self.agent.services.clock()

    def event(self, data: EventData, stream_id: str | None = None) -> NewEvent:
        return NewEvent(
            stream_id=stream_id or self.trigger.stream_id,
            data=data,
            correlation_id=self.state.task_id,
            causation_id=self.trigger.id,
            actor=self.agent.stage,
            created_at=self.now,
        )

    # ------------------------------------------------------------- change tracker

    async def begin_change(self, description: str) -> None:
        """Record pending -> in_progress for this stage's change (once, even on a re-run)."""
        change_id = f"{self.state.task_id}-{self.trigger.id[:12]}-{self.agent.stage}"
        stream = change_stream(change_id)
        store = self.agent.services.store
        state = changes.fold(change_id, await store.read_stream(stream))
        steps: list[EventData] = []
        if state.status == "new":
            steps.append(
                ChangePending(
                    task_id=self.state.task_id, stage=self.agent.stage, description=description
                )
            )
        if state.status in ("new", "pending"):
            steps.append(ChangeStarted())
        for data in steps:
            try:
                [recorded] = await store.append(stream, self._change_step(state, data))
            except DuplicateEventError:  # a concurrent re-run recorded it first
                state = changes.fold(change_id, await store.read_stream(stream))
            else:
                state = changes.evolve(state, recorded)
        self.change = state

    def _change_step(self, state: changes.ChangeState, data: EventData) -> list[NewEvent]:
        return changes.decide(
            state,
            data,
            correlation_id=self.state.task_id,
            causation_id=self.trigger.id,
            actor=self.agent.stage,
            at=self.now,
        )

    async def completed_change(self, commit: str, base: str, files: list[str]) -> list[NewEvent]:
        assert self.change is not None, "begin_change first"
        digest = await self.workspace.diff_sha256(base, commit)
        done = ChangeCompleted(commit=commit, diff_sha256=digest, files=tuple(files))
        return self._change_step(self.change, done)

    def failed(self, error: str) -> list[NewEvent]:
        out = [self.event(StageFailed(stage=self.agent.stage, error=error))]
        if self.change is not None and self.change.status == "in_progress":
            out += self._change_step(self.change, ChangeFailed(error_log=error))
        return out

    async def commit(self, files: list[str], what: str) -> str:
        """Commit ``files`` naming the agent and the event; return the commit (or HEAD)."""
        message = (
            f"forgeline {self.agent.stage}: {what}\n\n"
            f"Task: {self.state.task_id}\nEvent: {self.trigger.type} {self.trigger.id}\n"
        )
        commit = await self.workspace.commit(message, files)
        if commit is not None:
            self._log_written(files)
        return commit or await self.workspace.head()

    def _log_written(self, files: list[str], shown: int = 20) -> None:
        """A ``stage.log`` line per committed file: its lines, or that it was removed."""
        for name in files[:shown]:
            path = self.workspace.path / name
            try:
                lines = path.read_bytes().count(b"\n") if path.is_file() else None
            except OSError:
                lines = None
            self.activity.log(
                f"wrote {name} ({lines} lines)" if lines is not None else f"removed {name}"
            )
        if len(files) > shown:
            self.activity.log(f"and {len(files) - shown} more files")


class StageAgent(ABC):
    stage: ClassVar[Stage]

    def __init__(self, services: Services) -> None:
        self.services = services

    async def process_direct(
        self, state: TaskState, trigger: Event, *, cause: Event | None = None
    ) -> list[NewEvent]:
        """The run's events: a span in the task's trace and its ids on every log line."""
        task_id = state.task_id
        with (
            bind_task(task_id, stage=self.stage),
            self.services.tracing.stage(task_id, self.stage, trigger=trigger.type) as span,
        ):
            out = await self._process(state, trigger, cause)
            outcome = next((e.type for e in out if not e.type.startswith(_ASIDE)), "none")
            span.set_attribute("forgeline.outcome", outcome)
            log.debug(
                "%s finished on %s: %s",
                self.stage,
                trigger.type,
                outcome,
                extra={"trigger": trigger.type, "outcome": outcome, "events": len(out)},
            )
            return out

    async def _process(
        self, state: TaskState, trigger: Event, cause: Event | None
    ) -> list[NewEvent]:
        run = StageRun(self, state, trigger, cause)
        token = _current_run.set(run)
        try:
            with run.activity.working():  # progress while it works, log lines after
                try:
                    out = await self.run(run)
                except BudgetExceeded as exc:
                    out = run.paused(exc)
                except (ForgelineError, AgentRunError) as exc:
                    if self.services.escalates(exc):
                        raise
                    out = run.failed(_describe(exc))
                except Exception as exc:  # a bug in an agent must not wedge the task silently
                    if self.services.escalates(exc):
                        raise
                    detail = "".join(traceback.format_exception_only(exc)).strip()
                    out = run.failed(f"internal error: {detail}")
                await run.activity.settle()
        finally:
            _current_run.reset(token)
        return [
            *run.context_events(),
            *run.command_events(),
            *run.tool_events(),
            *run.package_events(),
            *run.activity.pending(),
            *out,
        ]

    @abstractmethod
    async def run(self, run: StageRun) -> list[NewEvent]: ...

    def model(self, role: ModelRole) -> Model:
        """``role``'s model chain, metered for the current stage run (usage events, cache,
        budget, loop detection) when there is one."""
        run = _current_run.get(None)
        if run is None:
            return self.services.models[role]
        return run.models.metered(role, run.meter(role))

    def model_timeout(self, role: ModelRole) -> float:
        """Seconds one request to ``role``'s chain may take."""
        settings = self.services.settings
        run = _current_run.get(None)
        models = self.services.models if run is None else run.models
        local = models.is_local(role)
        return settings.local_timeout if local else settings.model_timeout

    def model_agent(
        self,
        role: ModelRole,
        output_type: Any,
        instructions: str,
        *,
        output_retries: int | None = None,
        **kwargs: Any,
    ) -> Agent[Any, Any]:
        """A pydantic-ai agent on ``role``'s model chain (``model``), kept under the context
        budget; ``output_retries`` (default: the setting) answers it may send back."""
        settings = self.services.settings
        run = _current_run.get(None)
        capabilities: list[Any] = list(kwargs.pop("capabilities", ()))
        if run is not None:
            compactor = Compactor(
                role, settings.context_tokens, settings.trim_chars, run.compactions
            )
            capabilities.append(ProcessHistory(compactor))
        retries = settings.output_retries if output_retries is None else output_retries
        return Agent(
            self.model(role),
            output_type=output_type,
            instructions=instructions,
            retries={"output": retries, "tools": 1},
            name=role,
            model_settings={"timeout": self.model_timeout(role)},
            capabilities=capabilities,
            **kwargs,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, ModelAPIError):  # a provider's failure that no metered model named
        text = str(provider_failure(None, exc))
    elif isinstance(exc, AgentRunError):
        text = f"the model's output was still invalid after retries: {text}"
        if cause is not None and str(cause):
            text += f" ({cause})"
    return text[:4000]
