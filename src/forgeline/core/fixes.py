"""The pipeline's fix loop read back from a task's log: one record per fix round.

The fixer records every round as a ``fix.attempt`` event (attempt number, outcome,
reason, duration, the proposal's fingerprint). ``attempts_from_log`` turns a task's events
back into ``FixAttempt`` records (an applied round's outcome is the first ``test.results``
for its commit), ``run_from_log`` into the task's ``FixRun``, and ``fix_rate`` gives the
share of runs that ended with passing tests. Pure: events in, records out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from forgeline.core.events import Event, FixAttempted, Frozen, TestResults

__all__ = ["FixAttempt", "FixRun", "Outcome", "attempts_from_log", "fix_rate", "run_from_log"]

Outcome = Literal["applied", "rejected", "tests_pass", "tests_fail"]
Stopped = Literal["tests_pass", "max_attempts", "no_progress", "failed"]


class FixAttempt(Frozen):
    attempt: int
    outcome: Outcome
    """``rejected``: no change landed (the back-end failed, the patch engine rolled it
    back, or it repeated an earlier round); ``tests_fail`` / ``tests_pass``: landed and
    tested; ``applied``: landed, not tested yet."""
    reason: str = ""
    duration_s: float = 0.0
    paths: tuple[str, ...] = ()
    fingerprint: str | None = None


class FixRun(Frozen):
    attempts: tuple[FixAttempt, ...]
    stopped: Stopped
    """``failed``: a rejected round ended the task; ``max_attempts``: the rounds ran out,
    or the task is still going."""
    changed: tuple[str, ...] = ()
    """Paths the rounds that landed changed."""

    @property
    def fixed(self) -> bool:
        return self.stopped == "tests_pass"


def fix_rate(runs: Iterable[FixRun]) -> float:
    """The share of runs that ended with passing tests (0.0 for no runs)."""
    results = [run.fixed for run in runs]
    return sum(results) / len(results) if results else 0.0


def attempts_from_log(events: Iterable[Event]) -> tuple[FixAttempt, ...]:
    """A task's ``fix.attempt`` events as ``FixAttempt`` records, in order.

    An applied round becomes ``tests_pass``/``tests_fail`` after the first
    ``test.results`` for its commit (``applied`` while there is none yet); a rejected or
    no-progress round becomes ``rejected`` (its reason says which).
    """
    events = list(events)
    tested: dict[str, bool] = {}
    for event in events:
        if isinstance(event.data, TestResults):
            tested.setdefault(event.data.commit, event.data.ok)
    attempts: list[FixAttempt] = []
    for event in events:
        data = event.data
        if not isinstance(data, FixAttempted):
            continue
        outcome: Outcome = "rejected"
        reason = data.reason
        if data.outcome == "applied":
            ok = tested.get(data.commit or "")
            outcome = "applied" if ok is None else "tests_pass" if ok else "tests_fail"
        elif "no progress" not in reason:
            reason = f"no progress: {reason}" if data.outcome == "no_progress" else reason
        attempts.append(
            FixAttempt(
                attempt=data.attempt,
                outcome=outcome,
                reason=reason,
                duration_s=data.duration_s,
                paths=data.files,
                fingerprint=data.fingerprint,
            )
        )
    return tuple(attempts)


def run_from_log(events: Iterable[Event]) -> FixRun | None:
    """The fix loop of one task's log as a ``FixRun``; None when no fix round ran.

    ``stopped`` is ``tests_pass`` once a round's tests pass, ``no_progress`` or ``failed``
    when the last round was refused as a repeat or rejected, else ``max_attempts`` (the
    rounds ran out, or the task is still going).
    """
    events = list(events)
    recorded = [e.data for e in events if isinstance(e.data, FixAttempted)]
    if not recorded:
        return None
    attempts = attempts_from_log(events)
    stopped: Stopped = "max_attempts"
    if any(a.outcome == "tests_pass" for a in attempts):
        stopped = "tests_pass"
    elif recorded[-1].outcome == "no_progress":
        stopped = "no_progress"
    elif recorded[-1].outcome == "rejected":
        stopped = "failed"
    changed = sorted({p for a in attempts if a.outcome != "rejected" for p in a.paths})
    return FixRun(attempts=attempts, stopped=stopped, changed=tuple(changed))
