"""Giving tasks agents (note 002): the registry in the store, assignment by complexity.

The assigner is a stage without a model: on ``plan.created`` it asks ``core.agents`` for an
agent whose complexity range covers the planner's estimate, least recently active first,
and records ``task.assigned`` (which the architect acts on, with that agent's models from
then on) together with ``agent.assigned`` in the ``agents`` stream; or ``task.waiting``
with the reason. It appends these itself, like a change's opening steps, because an
agent's capacity is guarded by the ``agents`` stream's expected version (two tasks
deciding on the same registry cannot both take its last place); a stale version means
reading the registry again and deciding again.

A waiting task gets an agent when one frees up: ``Assignments.serve`` (run by the
executions that serve many tasks, and by ``forgeline run``'s while it waits) follows the
log and, after a task ends or an agent is registered, tries the waiting tasks again,
oldest first, each answering its own ``task.waiting`` (so two processes trying at once
record one assignment).

The registry is a projection: the ``agents`` stream folded (``core.agents``), less the
tasks that have ended (their rows in the ``tasks`` read model; a task that ended never
runs again, so each is looked up once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from forgeline.config import MODEL_ROLES, Settings
from forgeline.core import agents
from forgeline.core.agents import Assign, RegisterAgent, Registry, RemoveAgent
from forgeline.core.events import (
    AGENTS_STREAM,
    Event,
    NewEvent,
    PlanCreated,
    TaskWaiting,
    task_id_of,
    task_stream,
    utcnow,
)
from forgeline.errors import (
    ConcurrencyError,
    ConfigError,
    DuplicateEventError,
    InvalidRequestError,
)
from forgeline.llm.gateway import build_chain
from forgeline.pipeline.base import Services, StageAgent, StageRun
from forgeline.store.base import AppendRequest, EventStore
from forgeline.store.projections import FINAL_STATUSES

log = logging.getLogger(__name__)

ENDED = ("task.completed", "task.failed", "task.cancelled")


class Assignments:
    """The agent registry in ``store`` and the assignment of tasks to agents."""

    attempts = 16
    """How often an assignment is decided again on a registry that moved on meanwhile."""
    checkpoint_interval = 1.0

    def __init__(self, store: EventStore, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock
        self._folded = Registry()
        self._ended: dict[str, datetime] = {}
        self._waiting: dict[str, int] = {}
        """Waiting task id -> the position of its ``task.waiting`` (oldest first)."""

    # -------------------------------------------------------------- the registry

    async def registry(self) -> Registry:
        """The registry now: agents, what each works on, when each was last active."""
        newer = await self.store.read_stream(AGENTS_STREAM, after_version=self._folded.version)
        for event in newer:
            self._folded = agents.evolve(self._folded, event)
        folded = self._folded
        if not folded.agents:
            return folded  # the default agent has no limit: nobody's tasks matter
        for task_id in folded.holders:
            if task_id not in self._ended:
                row = await self.store.task(task_id)
                if row is not None and row.status in FINAL_STATUSES:
                    self._ended[task_id] = row.updated_at
        ended = {t: self._ended[t] for t in folded.holders if t in self._ended}
        return agents.finish(folded, ended)

    async def register(
        self,
        name: str,
        models: Mapping[str, str],
        *,
        min_complexity: int = 1,
        max_complexity: int = 10,
        capacity: int = 1,
        settings: Settings | None = None,
    ) -> agents.AgentState:
        """Add an agent (or replace the one of that name); each model chain is built
        first, so one that cannot be used is refused (``ConfigError``)."""
        for role, chain in models.items():
            if role not in MODEL_ROLES:
                raise InvalidRequestError(
                    f"unknown role {role!r} for a model chain: use {', '.join(MODEL_ROLES)}"
                )
            parts = [part.strip() for part in chain.split(",") if part.strip()]
            try:
                build_chain(parts, settings)
            except ConfigError as exc:
                raise ConfigError(f"agent {name!r}, role {role}: {exc}") from exc
        command = RegisterAgent(
            name=name,
            models=dict(models),
            min_complexity=min_complexity,
            max_complexity=max_complexity,
            capacity=capacity,
            at=self.clock(),
        )
        await self._decide_and_append(command)
        return (await self.registry()).agents[name]

    async def remove(self, name: str) -> None:
        """Remove an agent: it takes no new task (those it works on go on)."""
        await self._decide_and_append(RemoveAgent(name=name, at=self.clock()))

    async def _decide_and_append(self, command: RegisterAgent | RemoveAgent) -> None:
        registry = await self.registry()
        events = agents.decide(registry, command)
        await self.store.append(AGENTS_STREAM, events)

    # ---------------------------------------------------------------- assignment

    async def assign(self, task_id: str, complexity: int, cause: str) -> list[Event]:
        """Give the task an agent (or record why it waits), answering event ``cause``;
        return what was recorded (nothing if this was recorded before)."""
        for _ in range(self.attempts):
            registry = await self.registry()
            command = Assign(task_id=task_id, complexity=complexity, cause=cause, at=self.clock())
            try:
                return await self._append(agents.decide(registry, command), registry)
            except ConcurrencyError:
                continue  # another task took a place meanwhile: decide again
            except DuplicateEventError:
                return []  # decided and recorded before (a re-run, another process)
        raise ConcurrencyError(AGENTS_STREAM, self._folded.version, -1)

    async def _append(self, events: list[NewEvent], registry: Registry) -> list[Event]:
        groups: dict[str, list[NewEvent]] = {}
        for event in events:
            groups.setdefault(event.stream_id, []).append(event)
        requests = [
            AppendRequest(
                stream,
                tuple(group),
                registry.version if stream == AGENTS_STREAM else None,
            )
            for stream, group in groups.items()
        ]
        recorded = await self.store.append_batch(requests)
        return [e for group in recorded for e in group]

    async def assign_waiting(self) -> int:
        """Try every waiting task again, oldest first; how many got an agent."""
        given = 0
        for task_id in sorted(self._waiting, key=self._waiting.__getitem__):
            waiting = await self._last_waiting(task_id)
            if waiting is None:
                self._waiting.pop(task_id, None)
                continue
            assert isinstance(waiting.data, TaskWaiting)
            registry = await self.registry()
            if agents.why_waiting(registry, waiting.data.complexity) is not None:
                continue
            recorded = await self.assign(task_id, waiting.data.complexity, waiting.id)
            if any(e.type == "task.assigned" for e in recorded):
                given += 1
                self._waiting.pop(task_id, None)
        return given

    async def _last_waiting(self, task_id: str) -> Event | None:
        """The task's ``task.waiting`` if that is still where it stands."""
        events = await self.store.read_stream(task_stream(task_id))
        for event in reversed(events):
            if event.type in ("task.assigned", *ENDED):
                return None
            if event.type == "task.waiting":
                return event
        return None

    async def serve(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: give waiting tasks agents as agents free up."""
        for row in await self.store.tasks():
            if row.status == "waiting":
                self._waiting[row.id] = 0
        await self._retry()
        position = await self.store.get_checkpoint(ASSIGNER_CHECKPOINT)
        saved, loop = position, asyncio.get_running_loop()
        due = loop.time() + self.checkpoint_interval
        async for event in self.store.follow(after=position, stop=stop):
            position = event.position
            if self._note(event):
                await self._retry()
            if loop.time() >= due and position > saved:
                await self.store.save_checkpoint(ASSIGNER_CHECKPOINT, position)
                saved, due = position, loop.time() + self.checkpoint_interval
        if position > saved:
            with contextlib.suppress(Exception):
                await self.store.save_checkpoint(ASSIGNER_CHECKPOINT, position)

    def _note(self, event: Event) -> bool:
        """Keep track of the waiting tasks; whether an agent may have freed up."""
        task_id = task_id_of(event.stream_id)
        if event.type == "task.waiting" and task_id is not None:
            self._waiting.setdefault(task_id, event.position)
            return False
        if event.type == "task.assigned" and task_id is not None:
            self._waiting.pop(task_id, None)
            return False
        if event.type in ENDED and task_id is not None:
            self._waiting.pop(task_id, None)
            return bool(self._waiting)
        return event.type == "agent.registered" and bool(self._waiting)

    async def _retry(self) -> None:
        try:
            await self.assign_waiting()
        except Exception:  # the next freed agent tries again
            log.exception("assigning waiting tasks failed")


ASSIGNER_CHECKPOINT = "assigner:waiting"


class AssignerAgent(StageAgent):
    """The stage that gives a planned task its agent (no model)."""

    stage = "assigner"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.assignments = Assignments(services.store, services.clock)

    async def run(self, run: StageRun) -> list[NewEvent]:
        plan = run.trigger.data
        assert isinstance(plan, PlanCreated)
        await self.assignments.assign(run.state.task_id, plan.complexity, run.trigger.id)
        return []  # recorded above, guarded by the registry's version
