"""The agent registry and complexity-based assignment (note 002), pure.

An agent is a name, the models it runs each role on, the range of task complexities it
takes (1-10, as the planner estimates them in ``plan.created``) and its capacity (tasks
at once). The registry is a projection: ``fold`` over the ``agents`` stream
(``agent.registered``, ``agent.removed``, ``agent.assigned``), with ``finish`` applied for
every assigned task that has ended (its ``task.completed``/``failed``/``cancelled``), which
frees the agent. With no agent registered, one default agent covering 1-10 with the
configured models and no limit takes every task, as forgeline did before agents.

``decide(registry, Assign(...))`` picks an available agent whose range covers the task,
least recently active first (then by name), and returns ``task.assigned`` for the task's
stream and ``agent.assigned`` for the registry's; with none it returns ``task.waiting``
saying why. Event ids derive from the cause, so deciding twice records once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from forgeline.core.events import (
    AGENTS_STREAM,
    AgentAssigned,
    AgentRegistered,
    AgentRemoved,
    Event,
    EventData,
    Frozen,
    NewEvent,
    TaskAssigned,
    TaskWaiting,
    task_stream,
)
from forgeline.errors import InvalidRequestError

DEFAULT_AGENT = "default"
ASSIGNER = "assigner"
"""The actor of assignment events."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")

AgentStatus = Literal["available", "busy"]


class AgentState(Frozen):
    name: str
    models: dict[str, str] = Field(default_factory=dict)
    """A model chain per role (``a, b``); a role left out uses the configured one."""
    min_complexity: int = 1
    max_complexity: int = 10
    capacity: int | None = 1
    """Tasks at once; None: no limit (the default agent)."""
    registered_at: datetime | None = None
    tasks: tuple[str, ...] = ()
    """The tasks it works on now."""
    last_active: datetime | None = None
    """When it last took a task or finished one."""

    @property
    def status(self) -> AgentStatus:
        busy = self.capacity is not None and len(self.tasks) >= self.capacity
        return "busy" if busy else "available"

    def covers(self, complexity: int) -> bool:
        return self.min_complexity <= complexity <= self.max_complexity

    @property
    def range(self) -> str:
        return f"{self.min_complexity}-{self.max_complexity}"


class Registry(Frozen):
    agents: dict[str, AgentState] = Field(default_factory=dict)
    """The registered agents by name (removed ones are gone)."""
    holders: dict[str, str] = Field(default_factory=dict)
    """Task id -> the agent that took it, for every assignment not known to be finished."""
    version: int = 0
    """The ``agents`` stream's version this registry was folded to."""

    def effective(self) -> list[AgentState]:
        """The agents that take tasks: the registered ones, or the default agent."""
        if self.agents:
            return sorted(self.agents.values(), key=lambda a: a.name)
        tasks = tuple(t for t, name in self.holders.items() if name == DEFAULT_AGENT)
        return [AgentState(name=DEFAULT_AGENT, capacity=None, tasks=tasks)]


# ----------------------------------------------------------------------- evolve


def evolve(registry: Registry, event: Event) -> Registry:
    data = event.data
    agents = dict(registry.agents)
    holders = registry.holders
    match data:
        case AgentRegistered():
            old = agents.get(data.name)
            agents[data.name] = AgentState(
                name=data.name,
                models=dict(data.models),
                min_complexity=data.min_complexity,
                max_complexity=data.max_complexity,
                capacity=data.capacity,
                registered_at=event.created_at,
                tasks=old.tasks if old else (),
                last_active=old.last_active if old else None,
            )
        case AgentRemoved():
            agents.pop(data.name, None)
        case AgentAssigned():
            holders = {**holders, data.task_id: data.name}
            agent = agents.get(data.name)
            if agent is not None and data.task_id not in agent.tasks:
                agents[data.name] = agent.model_copy(
                    update={"tasks": (*agent.tasks, data.task_id), "last_active": event.created_at}
                )
        case _:
            pass
    return Registry(agents=agents, holders=holders, version=event.version)


def fold(events: Iterable[Event]) -> Registry:
    registry = Registry()
    for event in events:
        registry = evolve(registry, event)
    return registry


def finish(registry: Registry, finished: Mapping[str, datetime]) -> Registry:
    """The registry once the tasks in ``finished`` (task id -> when it ended) have ended:
    their agents are free of them."""
    ended = {t: at for t, at in finished.items() if t in registry.holders}
    if not ended:
        return registry
    agents = dict(registry.agents)
    for task_id, at in ended.items():
        agent = agents.get(registry.holders[task_id])
        if agent is None:
            continue
        last = max((x for x in (agent.last_active, at) if x is not None), default=None)
        agents[agent.name] = agent.model_copy(
            update={"tasks": tuple(t for t in agent.tasks if t != task_id), "last_active": last}
        )
    holders = {t: n for t, n in registry.holders.items() if t not in ended}
    return registry.model_copy(update={"agents": agents, "holders": holders})


# -------------------------------------------------------------------- commands


class RegisterAgent(Frozen):
    name: str
    models: dict[str, str] = Field(default_factory=dict)
    min_complexity: int = 1
    max_complexity: int = 10
    capacity: int = 1
    at: datetime


class RemoveAgent(Frozen):
    name: str
    at: datetime


class Assign(Frozen):
    """Give the task an agent; ``cause`` is the event this answers (its ``plan.created``,
    or the ``task.waiting`` it recorded when none could take it)."""

    task_id: str
    complexity: int
    cause: str
    at: datetime


Command = RegisterAgent | RemoveAgent | Assign


def decide(registry: Registry, command: Command) -> list[NewEvent]:
    match command:
        case RegisterAgent():
            return [_registry_event(_registered(command), command.at)]
        case RemoveAgent():
            if command.name not in registry.agents:
                raise InvalidRequestError(
                    f"no agent {command.name!r}: `forgeline agents list` shows them"
                )
            return [_registry_event(AgentRemoved(name=command.name), command.at)]
        case Assign():
            return _assign(registry, command)


def _registered(command: RegisterAgent) -> AgentRegistered:
    if not NAME.match(command.name):
        raise InvalidRequestError(
            f"agent name {command.name!r}: use 1-40 lower-case letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    if command.name == DEFAULT_AGENT:
        raise InvalidRequestError(
            f"{DEFAULT_AGENT!r} is the agent forgeline uses when none is registered: "
            "choose another name"
        )
    if not 1 <= command.min_complexity <= command.max_complexity <= 10:
        raise InvalidRequestError(
            f"complexity range {command.min_complexity}-{command.max_complexity}: give "
            "1 <= min <= max <= 10"
        )
    if command.capacity < 1:
        raise InvalidRequestError("capacity must be at least 1 task")
    for role, chain in command.models.items():
        if not chain.strip():
            raise InvalidRequestError(f"the model chain for {role} is empty")
    return AgentRegistered(
        name=command.name,
        models={role: chain.strip() for role, chain in command.models.items()},
        min_complexity=command.min_complexity,
        max_complexity=command.max_complexity,
        capacity=command.capacity,
    )


def why_waiting(registry: Registry, complexity: int) -> str | None:
    """Why no agent can take a task of ``complexity`` now; None when one can."""
    agents = registry.effective()
    covering = [a for a in agents if a.covers(complexity)]
    if not covering:
        ranges = ", ".join(f"{a.name} ({a.range})" for a in agents)
        return f"no agent takes complexity {complexity}: {ranges}"
    if any(a.status == "available" for a in covering):
        return None
    busy = ", ".join(f"{a.name} ({len(a.tasks)} of {a.capacity} tasks)" for a in covering)
    return f"every agent that takes complexity {complexity} is busy: {busy}"


def _assign(registry: Registry, command: Assign) -> list[NewEvent]:
    stream = task_stream(command.task_id)
    reason = why_waiting(registry, command.complexity)
    if reason is not None:
        waiting = TaskWaiting(complexity=command.complexity, reason=reason)
        return [_event(stream, waiting, command.task_id, command.cause, command.at)]
    free = [
        a for a in registry.effective() if a.covers(command.complexity) and a.status == "available"
    ]
    pick = min(free, key=lambda a: (a.last_active is not None, a.last_active or 0, a.name))
    assigned = TaskAssigned(agent=pick.name, complexity=command.complexity, models=pick.models)
    out = [_event(stream, assigned, command.task_id, command.cause, command.at)]
    if pick.capacity is not None:  # the default agent has no places to keep count of
        taken = AgentAssigned(
            name=pick.name, task_id=command.task_id, complexity=command.complexity
        )
        out.append(_event(AGENTS_STREAM, taken, command.task_id, command.cause, command.at))
    return out


_NAMESPACE = uuid.UUID("2b8f0d8e-61c4-4a57-9a8e-1f3c7d5a9b02")


def _event(stream: str, data: EventData, task_id: str, cause: str, at: datetime) -> NewEvent:
    return NewEvent(
        id=uuid.uuid5(_NAMESPACE, f"{cause}/{stream}/{data.type}").hex,
        stream_id=stream,
        data=data,
        correlation_id=task_id,
        causation_id=cause,
        actor=ASSIGNER,
        created_at=at,
    )


def _registry_event(data: EventData, at: datetime) -> NewEvent:
    return NewEvent(
        stream_id=AGENTS_STREAM,
        data=data,
        correlation_id=AGENTS_STREAM,
        actor="user",
        created_at=at,
    )
