"""The agent registry and assignment, pure: covering ranges, least recently active
first, busy until the task ends, waiting with a reason, the default agent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forgeline.core import agents
from forgeline.core.agents import Assign, RegisterAgent, Registry, RemoveAgent
from forgeline.core.events import AGENTS_STREAM, Event, NewEvent
from forgeline.errors import InvalidRequestError
from tests.core.given import AT


class Log:
    """The ``agents`` stream as a store would record it."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, new: list[NewEvent]) -> list[NewEvent]:
        for event in new:
            if event.stream_id == AGENTS_STREAM:
                n = len(self.events) + 1
                self.events.append(Event(**event.model_dump(), version=n, position=n))
        return new

    @property
    def registry(self) -> Registry:
        return agents.fold(self.events)

    def register(self, name: str, lo: int, hi: int, capacity: int = 1, minutes: int = 0) -> None:
        command = RegisterAgent(
            name=name,
            models={"coder": f"test:{name}"},
            min_complexity=lo,
            max_complexity=hi,
            capacity=capacity,
            at=AT + timedelta(minutes=minutes),
        )
        self.record(agents.decide(self.registry, command))

    def assign(self, task: str, complexity: int, minutes: int = 1) -> NewEvent:
        at = AT + timedelta(minutes=minutes)
        command = Assign(task_id=task, complexity=complexity, cause=f"plan-{task}", at=at)
        return self.record(agents.decide(self.registry, command))[0]


def test_with_no_agent_registered_the_default_agent_takes_everything() -> None:
    log = Log()
    for complexity in (1, 5, 10):
        [assigned] = agents.decide(
            Registry(), Assign(task_id="t", complexity=complexity, cause="c", at=AT)
        )
        assert assigned.type == "task.assigned" and assigned.stream_id == "task-t"
        assert assigned.data.agent == "default" and assigned.data.models == {}  # type: ignore[union-attr]
    assert log.registry.effective()[0].capacity is None


def test_an_agent_whose_range_covers_the_task_takes_it_with_its_models() -> None:
    log = Log()
    log.register("cheap", 1, 4)
    log.register("strong", 5, 10)
    assert log.assign("easy", 2).data.agent == "cheap"  # type: ignore[union-attr]
    hard = log.assign("hard", 8)
    assert hard.data.agent == "strong" and hard.data.models == {"coder": "test:strong"}  # type: ignore[union-attr]
    registry = log.registry
    assert registry.agents["cheap"].tasks == ("easy",) and registry.agents["cheap"].status == "busy"
    assert registry.holders == {"easy": "cheap", "hard": "strong"}


def test_the_least_recently_active_agent_goes_first() -> None:
    log = Log()
    log.register("a", 1, 10, capacity=3)
    log.register("b", 1, 10, capacity=3)
    assert log.assign("t1", 3, minutes=1).data.agent == "a"  # type: ignore[union-attr]  # neither was active: by name
    assert log.assign("t2", 3, minutes=2).data.agent == "b"  # type: ignore[union-attr]  # a was active at 1
    assert log.assign("t3", 3, minutes=3).data.agent == "a"  # type: ignore[union-attr]  # a at 1, b at 2
    # a task of b's ends: b is active at 10 now, a still at 3
    freed = agents.finish(log.registry, {"t2": AT + timedelta(minutes=10)})
    assert freed.agents["b"].tasks == () and freed.agents["b"].last_active == AT + timedelta(
        minutes=10
    )
    [pick, _] = agents.decide(freed, Assign(task_id="t4", complexity=3, cause="c4", at=AT))
    assert pick.data.agent == "a"  # type: ignore[union-attr]


def test_a_task_waits_with_the_reason_and_gets_the_agent_once_it_is_free() -> None:
    log = Log()
    log.register("small", 1, 4)
    log.register("big", 5, 8)
    log.assign("t1", 2)
    busy = log.assign("t2", 3)
    assert busy.type == "task.waiting"
    assert busy.data.reason == (  # type: ignore[union-attr]
        "every agent that takes complexity 3 is busy: small (1 of 1 tasks)"
    )
    none = log.assign("t3", 9)
    assert none.data.reason == "no agent takes complexity 9: big (5-8), small (1-4)"  # type: ignore[union-attr]
    free = agents.finish(log.registry, {"t1": AT})
    assert agents.why_waiting(free, 3) is None
    [assigned, taken] = agents.decide(free, Assign(task_id="t2", complexity=3, cause="w2", at=AT))
    assert assigned.data.agent == "small" and taken.stream_id == AGENTS_STREAM  # type: ignore[union-attr]


def test_deciding_twice_gives_the_same_events() -> None:
    log = Log()
    log.register("a", 1, 10)
    command = Assign(task_id="t", complexity=2, cause="plan", at=AT)
    assert agents.decide(log.registry, command) == agents.decide(log.registry, command)


def test_registering_checks_the_agent_and_removing_an_unknown_one_fails() -> None:
    for bad in (
        {"name": "Bad Name"},
        {"name": "default"},
        {"name": "x", "min_complexity": 7, "max_complexity": 3},
        {"name": "x", "capacity": 0},
        {"name": "x", "models": {"coder": "  "}},
    ):
        with pytest.raises(InvalidRequestError):
            agents.decide(Registry(), RegisterAgent(at=AT, **bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="no agent 'ghost'"):
        agents.decide(Registry(), RemoveAgent(name="ghost", at=AT))
    log = Log()
    log.register("a", 1, 10)
    log.assign("t1", 5)
    log.register("a", 2, 9, capacity=3)  # replaced: keeps what it works on
    assert log.registry.agents["a"].tasks == ("t1",) and log.registry.agents["a"].range == "2-9"
    log.record(agents.decide(log.registry, RemoveAgent(name="a", at=AT)))
    assert log.registry.effective()[0].name == "default"
