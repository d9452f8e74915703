"""Coder: writes the task's code, three ways by its trigger.

- ``spec.derived`` (a request the route rule sends straight to the candidates):
  ``direct.DirectAttempt`` samples whole programs, checks them against the spec, lets the
  designer's tests vote and lands the choice -> ``candidate.recorded``...,
  ``candidate.chosen`` (+ ``code.pr.opened`` when it meets the spec).
- ``plan.item.dispatched``: the plan step's change from a back-end
  (``backends.py``: the model, a coding CLI, or the pattern executor the item asks for,
  ``executors/router.py``) -> ``plan.item.completed``. With the tier's ``candidates``
  above one, that many answers are tried in the worktree and the best kept (``trials``).
- a rejected ``review.decision``: the reviewer's requested changes ->
  ``code.pr.opened(review)``.

Every change lands through ``landing.Lander``: the patch engine validates it in the tree
and rolls it back exactly when it fails; the commit message is forgeline's, from the step.
"""

from __future__ import annotations

from forgeline.core.events import (
    CodePrOpened,
    NewEvent,
    PlanItemCompleted,
    PlanItemDispatched,
    ReviewDecision,
    SpecDerived,
)
from forgeline.errors import StageError
from forgeline.executors.router import route
from forgeline.pipeline import prompts
from forgeline.pipeline.backends import Backend, PatternBackend, Step, backend_for, write
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.direct import DirectAttempt
from forgeline.pipeline.landing import Lander, NoProgressError
from forgeline.pipeline.research import research_notes
from forgeline.pipeline.trials import chooser


class CoderAgent(StageAgent):
    stage = "coder"

    async def run(self, run: StageRun) -> list[NewEvent]:
        data = run.trigger.data
        lander = Lander(self)
        if isinstance(data, SpecDerived):
            return await DirectAttempt(self, lander).run(run)
        if isinstance(data, PlanItemDispatched):
            return await self._item(run, lander, data.item_id)
        if isinstance(data, ReviewDecision):
            return await self._review(run, lander, data)
        raise StageError(f"the coder does not handle {run.trigger.type}")

    async def _item(self, run: StageRun, lander: Lander, item_id: str) -> list[NewEvent]:
        state = run.state
        if item_id not in state.items:
            raise StageError(f"plan item {item_id!r} is not in the plan")
        item = state.items[item_id].item
        await run.begin_change(f"plan item {item.id}: {item.title}")
        context = "\n\n".join(
            part for part in (prompts.task_context(state), research_notes(state, run.workspace))
            if part
        )  # fmt: skip
        request = (
            f"{context}\n\nImplement step [{item.id}] {item.title}: "
            f"{item.description}\nFiles for this step: {', '.join(item.files) or 'your choice'}"
        )
        what = f"plan item {item.id} ({item.title})"
        pattern = route(item)
        backend: Backend
        if pattern is None:
            backend = backend_for(self, lander)
        else:
            backend = PatternBackend(pattern)
            what += f" [{pattern.name}]"
        step = Step(run, "coder", prompts.CODER, request, what, tuple(item.files))
        try:
            landed = await write(step, backend, lander, first=chooser(step, backend, lander))
        except NoProgressError:
            # An earlier step already wrote what this one asks for (small models split
            # "create the file" from "write its function"): the step is done as it is.
            landed = await lander.land(run, None, what)
        done = PlanItemCompleted(
            item_id=item.id,
            commit=landed.commit,
            parent=landed.base,
            files=tuple(landed.files),
            change_id=run.change.change_id if run.change else None,
        )
        return [
            run.event(done),
            *await run.completed_change(landed.commit, landed.base, landed.files),
        ]

    async def _review(
        self, run: StageRun, lander: Lander, review: ReviewDecision
    ) -> list[NewEvent]:
        state = run.state
        await run.begin_change("changes requested by the reviewer")
        comments = "\n".join(f"- {c}" for c in review.comments) or "- (no comments)"
        request = (
            f"{prompts.task_context(state)}\n\nThe reviewer requests these changes:\n{comments}"
        )
        step = Step(run, "coder", prompts.CODER, request, "changes requested in review")
        landed = await write(step, backend_for(self, lander), lander)
        opened = CodePrOpened(
            branch=state.branch,
            commit=landed.commit,
            round=state.review_rounds + 1,
            reason="review",
            files=tuple(landed.files),
        )
        return [
            run.event(opened),
            *await run.completed_change(landed.commit, landed.base, landed.files),
        ]
