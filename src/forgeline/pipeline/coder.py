"""Coder: plan.item.dispatched -> plan.item.completed; review changes -> code.pr.opened.

Per plan item, the router (executors/router.py) picks a deterministic pattern executor
when the item asks for one, else the model. The model answers with whole files
(``CodeChange``); before anything touches the disk the answer is checked (not empty,
every path inside the workspace, every Python file parses) and a failing answer goes back
to the model with the reason (bounded retries). Every change then lands through the patch
engine, which validates it in the tree (Python compiles, the tests still collect) and
rolls it back exactly when it does not.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_ai import ModelRetry

from forgeline.config import Role
from forgeline.core.events import (
    CodePrOpened,
    NewEvent,
    PlanItemCompleted,
    PlanItemDispatched,
    ReviewDecision,
)
from forgeline.errors import StageError
from forgeline.executors.patch import EmptyChangeError, PatchError, apply_change, plan_writes
from forgeline.executors.router import route
from forgeline.executors.validation import PythonValidator, source_problem
from forgeline.llm.outputs import CodeChange
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun


def check_change(root: Path, change: CodeChange) -> CodeChange:
    """Raise ``ModelRetry`` saying what is wrong with ``change``, else return it.

    The patch engine's own pre-write checks, run while the model can still answer again.
    """
    if not change.files:
        raise ModelRetry("the change is empty: return at least one file with its full content")
    try:
        plan_writes(root, change)
    except PatchError as exc:
        raise ModelRetry(f"{exc}; use a relative path inside the repository, once each") from exc
    for file in change.files:
        if file.path.endswith(".py") and (problem := source_problem(file.path, file.content)):
            raise ModelRetry(problem)
    return change


class CodeWriter(StageAgent):
    """Shared by the coder and the fixer: ask for a change, check it, commit it."""

    async def write(
        self, run: StageRun, role: Role, instructions: str, prompt: str, what: str
    ) -> tuple[str, str, list[str]]:
        """Return (base, commit, files)."""
        agent = self.model_agent(role, CodeChange, instructions)
        agent.output_validator(lambda change: check_change(run.workspace.path, change))
        change: CodeChange = (await agent.run(prompt)).output
        return await self.land(run, change, what)

    async def land(
        self, run: StageRun, change: CodeChange | None, what: str
    ) -> tuple[str, str, list[str]]:
        """Apply ``change`` through the patch engine and commit it; (base, commit, files)."""
        workspace = run.workspace
        async with workspace.lock:
            await workspace.checkout(run.state.branch)
            base = await workspace.head()
            if change is None:
                return base, base, []
            validator = PythonValidator(self.services.spawner)
            try:
                applied = await apply_change(workspace, change, validate=validator)
            except EmptyChangeError as exc:
                raise StageError(
                    f"{what}: no progress, the change leaves every file as it is"
                ) from exc
            except PatchError as exc:
                raise StageError(f"{what}: the change was rolled back: {exc}") from exc
            files = list(applied.paths)
            commit = await run.commit(files, f"{what}: {change.summary}".rstrip(": "))
        return base, commit, files

    def context_files(self, run: StageRun, extra: tuple[str, ...] = ()) -> str:
        names = (*run.state.files, *extra)
        return prompts.files_block(run.workspace.tracked_text_files(dict.fromkeys(names)))


class CoderAgent(CodeWriter):
    stage = "coder"

    async def run(self, run: StageRun) -> list[NewEvent]:
        data = run.trigger.data
        if isinstance(data, PlanItemDispatched):
            return await self._item(run, data.item_id)
        if isinstance(data, ReviewDecision):
            return await self._review(run, data)
        raise StageError(f"the coder does not handle {run.trigger.type}")

    async def _item(self, run: StageRun, item_id: str) -> list[NewEvent]:
        state = run.state
        if item_id not in state.items:
            raise StageError(f"plan item {item_id!r} is not in the plan")
        item = state.items[item_id].item
        await run.begin_change(f"plan item {item.id}: {item.title}")
        prompt = (
            f"{prompts.task_context(state)}\n\nImplement step [{item.id}] {item.title}: "
            f"{item.description}\nFiles for this step: {', '.join(item.files) or 'your choice'}"
            f"\n\nCurrent files:\n{self.context_files(run, item.files)}"
        )
        what = f"plan item {item.id} ({item.title})"
        pattern = route(item)
        if pattern is None:
            base, commit, files = await self.write(run, "coder", prompts.CODER, prompt, what)
        else:
            result = await pattern.executor.execute(pattern.context(run.workspace))
            base, commit, files = await self.land(run, result.change, f"{what} [{result.pattern}]")
        done = PlanItemCompleted(
            item_id=item.id,
            commit=commit,
            parent=base,
            files=tuple(files),
            change_id=run.change.change_id if run.change else None,
        )
        return [run.event(done), *await run.completed_change(commit, base, files)]

    async def _review(self, run: StageRun, review: ReviewDecision) -> list[NewEvent]:
        state = run.state
        await run.begin_change("changes requested by the reviewer")
        comments = "\n".join(f"- {c}" for c in review.comments) or "- (no comments)"
        prompt = (
            f"{prompts.task_context(state)}\n\nThe reviewer requests these changes:\n{comments}"
            f"\n\nCurrent files:\n{self.context_files(run)}"
        )
        base, commit, files = await self.write(
            run, "coder", prompts.CODER, prompt, "changes requested in review"
        )
        opened = CodePrOpened(
            branch=state.branch,
            commit=commit,
            round=state.review_rounds + 1,
            reason="review",
            files=tuple(files),
        )
        return [run.event(opened), *await run.completed_change(commit, base, files)]
