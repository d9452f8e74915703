"""Reviewer: passing test.results -> review.decision (approve, or request changes)."""

from __future__ import annotations

from forgeline.core.events import NewEvent, ReviewDecision
from forgeline.llm.outputs import ReviewOutput
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun


class ReviewerAgent(StageAgent):
    stage = "reviewer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        async with workspace.lock:
            await workspace.checkout(state.branch)
            head = await workspace.head()
            diff = await workspace.diff(state.base_commit, head)
        tests = state.last_test
        summary = f"{tests.passed} passed, {tests.failed} failed" if tests else "not run"
        prompt = (
            f"{prompts.task_context(state)}\n\nTests: {summary}\n\n"
            f"The change (git diff):\n{prompts.trim(diff, 20_000)}"
        )
        agent = self.model_agent("reviewer", ReviewOutput, prompts.REVIEWER)
        review: ReviewOutput = (await agent.run(prompt)).output
        decision = ReviewDecision(approved=review.approved, comments=review.comments, commit=head)
        return [run.event(decision)]
