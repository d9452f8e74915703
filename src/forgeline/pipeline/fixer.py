"""Fixer: failing test.results -> code.pr.opened (a fix round), bounded by the task.

One fix round is one attempt of ``executors/fixgen.py``'s loop, spread over the pipeline:
the fixer proposes a change (the configured coder back-end, see ``coder.py``) and lands
it, the tester runs the tests, and failing tests bring the fixer back while rounds are
left. Every round records a ``fix.attempt`` event (number, outcome, reason, duration,
back-end, the proposal's fingerprint, the task diff's sha256 before and after), so the
fix rate can be read from the log (``fixgen.attempts_from_log``).

The fixer uses the configured coder back-end (``backends.py``) like the coder; nothing
of an answer it refuses goes back to the model. An answer that leaves every file as it is
is asked afresh (as many times as ``output_retries``): failing tests are never fixed by
the same files. The spec's checks (``spec.derived``'s test files) may not be changed.

Deterministic loop detection: a round stops the stage with "no progress" when its
proposal is the same as an earlier round's (same fingerprint), when it leaves every file
as it is (a CLI back-end), or when the code it leaves is the same as before or after an
earlier round (the task's whole diff has the same sha256; the commit is then dropped
again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from pydantic_ai.exceptions import AgentRunError

from forgeline.core.events import (
    CodePrOpened,
    FixAttempted,
    NewEvent,
    TestResults,
    task_stream,
)
from forgeline.errors import ForgelineError, StageError
from forgeline.executors.patch import change_fingerprint
from forgeline.llm.metered import BudgetExceeded
from forgeline.llm.outputs import Change
from forgeline.pipeline import prompts
from forgeline.pipeline.backends import Step, backend_for, write
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.landing import Landed, Lander, NoProgressError
from forgeline.pipeline.trials import chooser
from forgeline.sandbox.spawner import tail_text

Outcome = Literal["applied", "rejected", "no_progress"]

#: Characters of an earlier round's reason repeated in the next prompt.
REASON_LIMIT = 600


@dataclass
class _Round:
    """What is known about the round in progress (for its fix.attempt, also on failure)."""

    number: int
    started: float
    backend: str
    fingerprint: str | None = None
    base_digest: str | None = None
    digest: str | None = None


class FixerAgent(StageAgent):
    stage = "fixer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        results = run.trigger.data
        if not isinstance(results, TestResults):
            raise StageError(f"the fixer does not handle {run.trigger.type}")
        state = run.state
        number = state.fix_rounds + 1
        await run.begin_change(f"fix round {number}")
        earlier = await self._earlier_attempts(run)
        current = _Round(number, time.monotonic(), self.services.settings.coder.backend)
        try:
            landed = await self._fix(run, results, earlier, current)
        except BudgetExceeded:
            raise  # a pause, not a failed round: the stage runs again once approved
        except (ForgelineError, AgentRunError) as exc:
            reason = _reason(exc)
            no_progress = isinstance(exc, NoProgressError)
            outcome: Outcome = "no_progress" if no_progress else "rejected"
            attempt = self._attempt(current, outcome, reason)
            return [run.event(attempt), *run.failed(reason)]
        summary = landed.change.summary if landed.change is not None else ""
        attempt = self._attempt(current, "applied", summary, landed)
        opened = CodePrOpened(
            branch=state.branch,
            commit=landed.commit,
            round=number,
            reason="fix",
            files=tuple(landed.files),
        )
        return [
            run.event(attempt),
            run.event(opened),
            *await run.completed_change(landed.commit, landed.base, landed.files),
        ]

    async def _fix(
        self,
        run: StageRun,
        results: TestResults,
        earlier: list[FixAttempted],
        current: _Round,
    ) -> Landed:
        state = run.state
        what = f"fix round {current.number}"
        failing = "\n".join(f"- {name}" for name in results.failing) or "- (see output)"
        request = (
            f"{prompts.task_context(state)}\n\nThese tests fail:\n{failing}\n\n"
            f"Test output:\n{prompts.trim(results.output)}"
        )
        if earlier:
            request += "\n\nEarlier fix rounds (do not repeat them):\n" + "\n".join(
                _history_line(a) for a in earlier
            )

        async def screen(change: Change) -> None:
            current.fingerprint = change_fingerprint(change)
            for attempt in earlier:
                if attempt.fingerprint == current.fingerprint:
                    raise NoProgressError(
                        f"{what}: no progress, the same change as fix round {attempt.attempt}"
                    )

        lander = Lander(self)
        step = Step(run, "fixer", prompts.FIXER, request, what, must_change=True)
        backend = backend_for(self, lander)
        first = chooser(step, backend, lander)
        landed = await write(step, backend, lander, screen=screen, first=first)
        workspace = run.workspace
        current.base_digest = await workspace.diff_sha256(state.base_commit, landed.base)
        current.digest = await workspace.diff_sha256(state.base_commit, landed.commit)
        seen = _seen_code(earlier)
        seen.setdefault(current.base_digest, f"before fix round {current.number}")
        if current.digest in seen:
            async with workspace.lock:  # drop the commit: the round is not recorded
                await workspace.reset_to(state.branch, landed.base)
            raise NoProgressError(
                f"{what}: no progress, the code is the same as {seen[current.digest]} "
                f"(task diff sha256 {current.digest[:12]})"
            )
        return landed

    async def _earlier_attempts(self, run: StageRun) -> list[FixAttempted]:
        events = await self.services.store.read_stream(task_stream(run.state.task_id))
        return [
            e.data
            for e in events
            if isinstance(e.data, FixAttempted) and e.causation_id != run.trigger.id
        ]

    def _attempt(
        self,
        current: _Round,
        outcome: Outcome,
        reason: str,
        landed: Landed | None = None,
    ) -> FixAttempted:
        return FixAttempted(
            attempt=current.number,
            outcome=outcome,
            reason=reason,
            duration_s=round(time.monotonic() - current.started, 3),
            backend=current.backend,
            fingerprint=current.fingerprint,
            diff_sha256=current.digest,
            base_diff_sha256=current.base_digest,
            commit=landed.commit if landed else None,
            files=tuple(landed.files) if landed else (),
        )


def _reason(exc: BaseException) -> str:
    """What ``fix.attempt`` and ``stage.failed`` say for ``exc``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, AgentRunError):
        text = f"the model's output was still invalid after retries: {text}"
    return text[:4000]


def _seen_code(earlier: list[FixAttempted]) -> dict[str, str]:
    """Task-diff digests of code the tests already ran on, with a label each."""
    seen: dict[str, str] = {}
    for attempt in earlier:
        if attempt.outcome != "applied":
            continue
        if attempt.base_diff_sha256:
            seen.setdefault(attempt.base_diff_sha256, f"before fix round {attempt.attempt}")
        if attempt.diff_sha256:
            seen.setdefault(attempt.diff_sha256, f"after fix round {attempt.attempt}")
    return seen


def _history_line(attempt: FixAttempted) -> str:
    outcome = attempt.outcome.replace("_", " ")
    files = f" ({', '.join(attempt.files)})" if attempt.files else ""
    reason = f": {tail_text(attempt.reason, REASON_LIMIT)}" if attempt.reason else ""
    after = "; the tests still failed" if attempt.outcome == "applied" else ""
    return f"- round {attempt.attempt}: {outcome}{files}{reason}{after}"
