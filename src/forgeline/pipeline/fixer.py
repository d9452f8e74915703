"""Fixer: failing test.results -> code.pr.opened (a fix round), bounded by the task."""

from __future__ import annotations

from forgeline.core.events import CodePrOpened, NewEvent, TestResults
from forgeline.errors import StageError
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageRun
from forgeline.pipeline.coder import CodeWriter


class FixerAgent(CodeWriter):
    stage = "fixer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        results = run.trigger.data
        if not isinstance(results, TestResults):
            raise StageError(f"the fixer does not handle {run.trigger.type}")
        state = run.state
        await run.begin_change(f"fix round {state.fix_rounds + 1}")
        failing = "\n".join(f"- {name}" for name in results.failing) or "- (see output)"
        prompt = (
            f"{prompts.task_context(state)}\n\nThese tests fail:\n{failing}\n\n"
            f"Test output:\n{prompts.trim(results.output)}\n\n"
            f"Current files:\n{self.context_files(run)}"
        )
        base, commit, files = await self.write(
            run, "fixer", prompts.FIXER, prompt, f"fix round {state.fix_rounds + 1}"
        )
        opened = CodePrOpened(
            branch=state.branch,
            commit=commit,
            round=state.fix_rounds + 1,
            reason="fix",
            files=tuple(files),
        )
        return [run.event(opened), *await run.completed_change(commit, base, files)]
