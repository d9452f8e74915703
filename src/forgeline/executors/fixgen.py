"""The fix generator: failing tests -> a proposed change -> validated apply -> re-test.

``generate_fix`` is the loop on its own, reusable by the fixer stage and by a benchmark:

1. trim the failing output to ``max_chars`` (its end, where pytest puts the summary) and
   build a prompt from it and the earlier attempts' outcomes;
2. ask ``propose(prompt)`` (the coder back-end) for a change;
3. apply it with the patch engine (``apply_change``: validated, rolled back on failure);
4. run ``run_tests()``; passing tests end the loop.

It stops after ``max_attempts``, and early when an attempt proposes the same change as the
previous one, or a change that would leave every file as it is (no progress). A change
whose tests still fail stays in the tree for the next attempt to build on
(``keep_failed=True``, like the pipeline's fix rounds) or is reverted so that every
attempt starts from the same tree (``keep_failed=False``).

Every attempt gives a ``FixAttempt`` record (number, outcome, reason, duration) that a
caller turns into events and a benchmark into a fix rate. The pipeline's fixer runs the
same loop one round per stage and records each round as a ``fix.attempt`` event;
``attempts_from_log``/``run_from_log`` turn a task's log back into these records (an
applied round's outcome is the ``test.results`` for its commit), so ``fix_rate`` works
on recorded tasks too. The loop does not commit: on
``tests_pass`` the caller commits ``FixRun.changed``. It takes ``workspace.lock`` around
each apply and test run (not around ``propose``): do not call it while holding that lock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from forgeline.core.events import Event, FixAttempted, Frozen, TestResults
from forgeline.errors import ForgelineError
from forgeline.executors.patch import (
    Change,
    EmptyChangeError,
    PatchError,
    apply_change,
    change_fingerprint,
    revert_change,
)
from forgeline.executors.validation import Validator
from forgeline.sandbox.spawner import tail_text
from forgeline.workspace.git import GitWorkspace

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "FixAttempt",
    "FixRun",
    "Outcome",
    "SuiteOutcome",
    "attempts_from_log",
    "build_prompt",
    "fix_rate",
    "generate_fix",
    "run_from_log",
]

Outcome = Literal["applied", "rejected", "tests_pass", "tests_fail"]
Stopped = Literal["tests_pass", "max_attempts", "no_progress", "untestable", "failed"]

DEFAULT_INSTRUCTIONS = (
    "The tests of this repository fail. Propose the smallest change to the code that makes "
    "them pass. Change the code under test, not the tests, unless a test is plainly wrong."
)
#: Characters of an earlier attempt's reason repeated in the next prompt.
REASON_LIMIT = 600


class SuiteOutcome(Protocol):
    """What ``run_tests`` returns; ``forgeline.runs.testrun.TestReport`` is one."""

    @property
    def ok(self) -> bool: ...

    @property
    def output(self) -> str: ...


class FixAttempt(Frozen):
    attempt: int
    outcome: Outcome
    """``rejected``: proposing or applying failed (nothing changed); ``tests_fail`` /
    ``tests_pass``: applied and tested; ``applied``: applied, but the tests could not run."""
    reason: str = ""
    duration_s: float = 0.0
    paths: tuple[str, ...] = ()
    fingerprint: str | None = None


class FixRun(Frozen):
    attempts: tuple[FixAttempt, ...]
    stopped: Stopped
    """``failed`` (from a pipeline log only): a rejected round ended the task."""
    changed: tuple[str, ...] = ()
    """Paths changed in the working tree by the attempts that stayed (not committed)."""

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


def build_prompt(
    instructions: str, output: str, max_chars: int, attempts: Iterable[FixAttempt]
) -> str:
    """The prompt for the next attempt: instructions, trimmed output, earlier outcomes."""
    trimmed = tail_text(output, max_chars)
    prompt = (
        f"{instructions}\n\nThe end of the test output ({max_chars} characters at most):\n"
        f"```\n{trimmed.rstrip()}\n```\n"
    )
    history = [
        f"- attempt {a.attempt}: {a.outcome.replace('_', ' ')}"
        + (f": {tail_text(a.reason, REASON_LIMIT)}" if a.reason else "")
        for a in attempts
    ]
    if history:
        prompt += "\nEarlier attempts:\n" + "\n".join(history) + "\n"
    return prompt


async def generate_fix(
    workspace: GitWorkspace,
    failure_output: str,
    *,
    propose: Callable[[str], Awaitable[Change]],
    run_tests: Callable[[], Awaitable[SuiteOutcome]],
    validate: Validator,
    max_attempts: int = 3,
    max_chars: int = 6_000,
    keep_failed: bool = True,
    instructions: str = DEFAULT_INSTRUCTIONS,
    on_attempt: Callable[[FixAttempt], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FixRun:
    """Try up to ``max_attempts`` changes until ``run_tests`` passes; see the module doc.

    ``propose`` may raise a ``ForgelineError`` (the back-end failed): that attempt is
    rejected and the loop goes on. ``run_tests`` raising a ``ForgelineError`` ends it
    (``untestable``) with the change applied.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    attempts: list[FixAttempt] = []
    changed: set[str] = set()
    output = failure_output
    previous: tuple[int, str] | None = None  # the last proposal: attempt, fingerprint
    stopped: Stopped = "max_attempts"

    async def record(
        number: int,
        started: float,
        outcome: Outcome,
        reason: str = "",
        paths: tuple[str, ...] = (),
        fingerprint: str | None = None,
    ) -> None:
        entry = FixAttempt(
            attempt=number,
            outcome=outcome,
            reason=reason,
            duration_s=clock() - started,
            paths=paths,
            fingerprint=fingerprint,
        )
        attempts.append(entry)
        if on_attempt is not None:
            await on_attempt(entry)

    for number in range(1, max_attempts + 1):
        started = clock()
        prompt = build_prompt(instructions, output, max_chars, attempts)
        try:
            change = await propose(prompt)
        except ForgelineError as exc:
            await record(number, started, "rejected", f"the coder back-end failed: {exc}")
            continue
        fingerprint = change_fingerprint(change)
        if previous is not None and fingerprint == previous[1]:
            await record(
                number,
                started,
                "rejected",
                f"the same change as attempt {previous[0]}: no progress",
                fingerprint=fingerprint,
            )
            stopped = "no_progress"
            break
        previous = (number, fingerprint)

        async with workspace.lock:  # released before on_attempt runs
            step = await _apply_and_test(workspace, change, validate, run_tests, keep_failed)
        if step.keep:
            changed.update(step.paths)
        await record(
            number, started, step.outcome, step.reason, paths=step.paths, fingerprint=fingerprint
        )
        if step.stop is not None:
            stopped = step.stop
            break
        if step.output is not None:
            output = step.output

    return FixRun(attempts=tuple(attempts), stopped=stopped, changed=tuple(sorted(changed)))


@dataclass(frozen=True)
class _Step:
    outcome: Outcome
    reason: str
    paths: tuple[str, ...] = ()
    keep: bool = False  # the change stays in the tree
    stop: Stopped | None = None
    output: str | None = None  # the new failing output


async def _apply_and_test(
    workspace: GitWorkspace,
    change: Change,
    validate: Validator,
    run_tests: Callable[[], Awaitable[SuiteOutcome]],
    keep_failed: bool,
) -> _Step:
    """One attempt's apply and test run (the caller holds the workspace lock)."""
    try:
        applied = await apply_change(workspace, change, validate=validate)
    except EmptyChangeError as exc:
        return _Step("rejected", f"no progress: {exc}", stop="no_progress")
    except PatchError as exc:
        return _Step("rejected", str(exc))
    paths = applied.paths
    try:
        report = await run_tests()
    except ForgelineError as exc:
        reason = f"the tests could not run: {exc}"
        return _Step("applied", reason, paths, keep=True, stop="untestable")
    if report.ok:
        return _Step("tests_pass", "passed", paths, keep=True, stop="tests_pass")
    if keep_failed:
        reason = "the tests still fail; the change stays for the next attempt"
    else:
        await revert_change(workspace, applied)
        reason = "the tests still fail; the change was reverted"
    return _Step("tests_fail", reason, paths, keep=keep_failed, output=report.output)
