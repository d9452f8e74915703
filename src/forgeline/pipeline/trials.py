"""Several answers for one plan step, each tried in the worktree, the best kept.

With a tier's ``candidates`` above one, a plan step asks its back-end that many times
(each a conversation of its own, a seed each). Every distinct proposal is applied through
the patch engine, the repository's tests run against it, and it is reverted. The spec's
checks (committed with the spec) filter: a proposal that fails fewer of them wins. Then
the most passing minus failing tests (a test the proposal removes counts as failing),
then the proposal most answers agree on, then the earliest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from forgeline.executors.patch import PatchError, apply_change, change_fingerprint, revert_change
from forgeline.executors.validation import PythonValidator
from forgeline.llm.outputs import Change
from forgeline.pipeline.backends import Backend, Rejected, Step
from forgeline.pipeline.landing import Lander
from forgeline.runs.testrun import TestReport, run_pytest
from forgeline.workspace.venv import WorkspaceVenv


def chooser(
    step: Step, backend: Backend, lander: Lander
) -> Callable[[], Awaitable[Change | None]] | None:
    """The first attempt of ``write`` for ``step``: the best of the tier's ``candidates``
    answers, where there are several to ask for (a model back-end); else None."""
    count = step.run.tier[1].candidates
    if count < 2 or backend.attempts < 2:
        return None

    async def first() -> Change | None:
        return await choose_change(step, backend, lander, count)

    return first


async def choose_change(step: Step, backend: Backend, lander: Lander, count: int) -> Change | None:
    """The best of ``count`` proposals for ``step`` (see the module's rule)."""
    proposals: list[Change] = []
    refused: Rejected | None = None
    for seed in range(count):
        try:
            change = await backend.propose(step, seed, None)
        except Rejected as exc:  # this one never validated; others may
            refused = exc
            continue
        if change is not None:
            proposals.append(change)
    if not proposals:
        if refused is not None:
            raise refused
        return None
    votes = Counter(change_fingerprint(c) for c in proposals)
    distinct = {change_fingerprint(c): c for c in proposals}
    if len(distinct) == 1:
        return proposals[0]
    run = step.run
    venv = await run.venv()
    async with run.workspace.lock:  # the tests as they are now: none may go missing
        await run.workspace.checkout(run.state.branch)
        before = await _tests(step, venv)
    scored: list[tuple[tuple[int, int, int, int], Change]] = []
    for order, (fingerprint, change) in enumerate(distinct.items()):
        report = await _tried(step, lander, change, venv)
        if report is None:
            continue
        spec_ids = {c.test_id for c in run.state.spec.checks} if run.state.spec else set()
        spec_failed = sum(1 for t in report.failing if t in spec_ids)
        missing = max(0, before.tests - report.tests)
        passing = report.passed - report.failed - report.errors - missing
        scored.append(((-spec_failed, passing, votes[fingerprint], -order), change))
    if not scored:
        return proposals[0]  # none applies: landing says why
    return max(scored, key=lambda item: item[0])[1]


async def _tried(
    step: Step, lander: Lander, change: Change, venv: WorkspaceVenv | None
) -> TestReport | None:
    """The tests with ``change`` applied (then reverted); None when it does not apply."""
    workspace = step.run.workspace
    async with workspace.lock:
        await workspace.checkout(step.run.state.branch)
        try:
            applied = await apply_change(
                workspace,
                change,
                validate=PythonValidator(lander.services.spawner, venv=venv, sync=step.run.venv),
                max_file_bytes=lander.max_file_bytes,
            )
        except PatchError:
            return None
        try:
            return await _tests(step, venv)
        finally:
            await revert_change(workspace, applied)


async def _tests(step: Step, venv: WorkspaceVenv | None) -> TestReport:
    """The repository's tests as the tree is now (the caller holds the lock)."""
    services = step.run.agent.services
    return await run_pytest(
        step.run.workspace.path,
        services.spawner,
        timeout=services.settings.test_timeout,
        venv=venv,
    )
