"""Tester: code.pr.opened -> test.results, running the workspace's pytest suite for real."""

from __future__ import annotations

from forgeline.core.events import NewEvent, TestResults
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.runs.testrun import run_pytest


class TesterAgent(StageAgent):
    stage = "tester"

    async def run(self, run: StageRun) -> list[NewEvent]:
        workspace = run.workspace
        settings = self.services.settings
        async with workspace.lock:  # nobody edits the tree while it is tested
            await workspace.checkout(run.state.branch)
            commit = await workspace.head()
            # The task's own venv with the packages the tree declares: the tests see the
            # project's packages, not forgeline's.
            venv = await run.venv()
            report = await run_pytest(
                workspace.path,
                self.services.spawner,
                timeout=settings.test_timeout,
                venv=venv,
            )
        results = TestResults(
            commit=commit,
            passed=report.passed,
            failed=report.failed,
            errors=report.errors,
            skipped=report.skipped,
            failing=report.failing,
            output=report.output[-8000:],
            timed_out=report.timed_out,
            usage=report.usage,
        )
        return [run.event(results)]
