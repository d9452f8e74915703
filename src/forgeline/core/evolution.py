"""The evolution daemon's decisions (note 000), pure: which signals become changes.

A cycle scans a repository (I/O, ``forgeline.evolve``) into ``Signal``s; ``plan_cycle``
ranks them and lets the guardrails say which become changes, given the changes tracked so
far and the time; ``cycle_history`` folds the daemon's stream for one repository (what
cycle comes next, which were recorded, which are complete).

**The ranking rule.** By priority, highest first; equal priorities by kind in the order
failing tests, goals, type errors, lint findings, TODO/FIXME markers, uncovered functions;
then by where they point (the fingerprint), so the order never depends on the scan's.
Priorities by kind (``KIND_PRIORITY``): failing tests 10, goals 8 (or the goal's own),
type errors 6, lint 5, TODO/FIXME 3, uncovered functions 2.

**The guardrails**, in this order for each signal, best first:

1. a signal an open change already answers (same fingerprint) is not new: skipped;
2. one open change per target module;
3. a signal whose last ``max_attempts`` changes all failed is left alone;
4. a module changed less than ``cooldown_s`` ago (by a proposal) waits;
5. at most ``max_in_flight`` changes pending or in progress;
6. at most ``max_per_day`` changes proposed in the last 24 hours;
7. at most ``max_changes`` changes per cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import Field

from forgeline.core.events import (
    EVOLVE_STREAM,
    Budget,
    CycleCompleted,
    CycleRecorded,
    Event,
    Frozen,
    SignalKind,
    SignalRef,
    SkippedSignal,
)
from forgeline.core.rsi import IN_FLIGHT, OPEN, RSIChange

KIND_ORDER: tuple[SignalKind, ...] = ("test", "goal", "type", "lint", "todo", "coverage")
KIND_PRIORITY: dict[SignalKind, int] = {
    "test": 10,
    "goal": 8,
    "type": 6,
    "lint": 5,
    "todo": 3,
    "coverage": 2,
}


class Signal(Frozen):
    """Something in a repository worth a change: a failing test, a lint finding ...

    ``fingerprint`` identifies it across scans (``lint:util.py``); ``request`` is what the
    pipeline is asked to do about it; ``priority`` ranks it."""

    kind: SignalKind
    fingerprint: str
    target_module: str
    summary: str
    request: str
    locations: tuple[str, ...] = ()
    priority: int
    given: dict[str, str] = Field(default_factory=dict)
    """``RSITask`` fields as a person wrote them (a goal's priority or module), validated
    as they are."""

    def ref(self) -> SignalRef:
        return SignalRef(
            kind=self.kind,
            fingerprint=self.fingerprint,
            target_module=self.target_module,
            summary=self.summary[:300],
            priority=self.priority,
        )


def rank(signals: Iterable[Signal]) -> list[Signal]:
    """The signals best first (the ranking rule above)."""
    return sorted(signals, key=lambda s: (-s.priority, KIND_ORDER.index(s.kind), s.fingerprint))


class Limits(Frozen):
    max_changes: int = Field(2, ge=0)
    max_in_flight: int = Field(2, ge=1)
    max_per_day: int = Field(10, ge=0)
    cooldown_s: float = Field(3600, ge=0)
    max_attempts: int = Field(2, ge=1)


class CyclePlan(Frozen):
    chosen: tuple[Signal, ...] = ()
    skipped: tuple[SkippedSignal, ...] = ()


def plan_cycle(
    signals: Iterable[Signal], changes: Sequence[RSIChange], limits: Limits, now: datetime
) -> CyclePlan:
    """Which of ``signals`` become changes this cycle, and why the others do not.
    ``changes`` are the repository's tracked changes."""
    open_by_fingerprint = {c.fingerprint: c for c in changes if c.status in OPEN}
    busy_modules = {c.target_module: c for c in changes if c.status in OPEN}
    in_flight = sum(1 for c in changes if c.status in IN_FLIGHT)
    day_ago = now - timedelta(days=1)
    today = sum(1 for c in changes if c.created_at is not None and c.created_at > day_ago)
    cooldown = timedelta(seconds=limits.cooldown_s)
    chosen: list[Signal] = []
    skipped: list[SkippedSignal] = []

    def skip(signal: Signal, reason: str) -> None:
        skipped.append(SkippedSignal(fingerprint=signal.fingerprint, reason=reason))

    for signal in rank(signals):
        module = signal.target_module
        same = [c for c in changes if c.fingerprint == signal.fingerprint]
        recent = [
            c
            for c in changes
            if c.target_module == module
            and c.created_at is not None
            and c.created_at > now - cooldown
        ]
        if signal.fingerprint in open_by_fingerprint:
            skip(signal, f"already answered by {open_by_fingerprint[signal.fingerprint].change_id}")
        elif module in busy_modules or any(s.target_module == module for s in chosen):
            owner = busy_modules.get(module)
            skip(signal, f"{module} has an open change{f' ({owner.change_id})' if owner else ''}")
        elif len(same) >= limits.max_attempts and all(
            c.status == "failed" for c in same[-limits.max_attempts :]
        ):
            skip(signal, f"its last {limits.max_attempts} changes failed")
        elif recent:
            skip(signal, f"{module} is cooling down after {recent[-1].change_id}")
        elif in_flight + len(chosen) >= limits.max_in_flight:
            skip(signal, f"{limits.max_in_flight} changes in flight")
        elif today + len(chosen) >= limits.max_per_day:
            skip(signal, f"{limits.max_per_day} changes in the last 24 hours")
        elif len(chosen) >= limits.max_changes:
            skip(signal, f"at most {limits.max_changes} changes per cycle")
        else:
            chosen.append(signal)
    return CyclePlan(chosen=tuple(chosen), skipped=tuple(skipped))


def change_id(cycle: int, index: int) -> str:
    """The id of a cycle's ``index``-th change (from 1): ``RSI-<cycle>.<index>``."""
    return f"RSI-{cycle}.{index}"


def shared_budget(cycle_budget: Budget, changes: int, per_task: Budget) -> Budget:
    """Each change's budget: the cycle's shared out evenly among its changes (so the
    cycle cannot spend more), else the per-task budget of the settings."""
    if cycle_budget.tokens is None and cycle_budget.usd is None:
        return per_task
    n = max(changes, 1)
    return Budget(
        tokens=None if cycle_budget.tokens is None else cycle_budget.tokens // n,
        usd=None if cycle_budget.usd is None else cycle_budget.usd / n,
    )


class CycleHistory(Frozen):
    """One repository's cycles, from the daemon's stream."""

    repository: str
    recorded: tuple[CycleRecorded, ...] = ()
    completed: frozenset[int] = frozenset()
    last_at: datetime | None = None
    next_cycle: int = 1
    """The number the next cycle gets (numbers are per store: change ids stay unique)."""
    version: int = 0
    """The stream's version (the next cycle is recorded expecting it)."""

    @property
    def unfinished(self) -> tuple[CycleRecorded, ...]:
        return tuple(c for c in self.recorded if c.cycle not in self.completed)


def cycle_history(repository: str, events: Iterable[Event]) -> CycleHistory:
    """Fold the daemon's stream (``evolve``) for ``repository``."""
    recorded: list[CycleRecorded] = []
    completed: set[int] = set()
    last_at: datetime | None = None
    highest = 0
    version = 0
    for event in events:
        version = event.version
        data = event.data
        if isinstance(data, CycleRecorded):
            highest = max(highest, data.cycle)
            if data.repository == repository:
                recorded.append(data)
                last_at = event.created_at
        elif isinstance(data, CycleCompleted) and data.repository == repository:
            completed.add(data.cycle)
    return CycleHistory(
        repository=repository,
        recorded=tuple(recorded),
        completed=frozenset(completed),
        last_at=last_at,
        next_cycle=highest + 1,
        version=version,
    )


__all__ = [
    "EVOLVE_STREAM",
    "KIND_ORDER",
    "KIND_PRIORITY",
    "CycleHistory",
    "CyclePlan",
    "Limits",
    "Signal",
    "change_id",
    "cycle_history",
    "plan_cycle",
    "rank",
    "shared_budget",
]
