"""Planner: the task's spec first, then (where the route rule says) its plan.

- ``task.initiated`` -> ``spec.derived`` (``specification.specify``): the request's spec,
  its checks committed, and the facts the route follows from;
- ``spec.derived`` the route rule gives the planner (its tier always plans, or the
  request spans modules, or the repository has code), or ``candidate.chosen`` of a direct
  attempt none of whose candidates met the spec -> ``plan.created``, committing
  ``plan.yaml``.
"""

from __future__ import annotations

import yaml
from pydantic_ai import ModelRetry

from forgeline.core.events import NewEvent, PlanCreated, TaskInitiated
from forgeline.core.plan import PlanError, repair_plan, validate_plan
from forgeline.errors import WorkspaceError
from forgeline.llm.outputs import PlanOutput
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.fresh import ask_afresh
from forgeline.pipeline.research import planner_instructions
from forgeline.pipeline.specification import specify
from forgeline.workspace.git import confined_path


class PlannerAgent(StageAgent):
    stage = "planner"

    async def run(self, run: StageRun) -> list[NewEvent]:
        if isinstance(run.trigger.data, TaskInitiated):
            return await specify(self, run)
        return await self._plan(run)

    async def _plan(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        await run.begin_change("plan.yaml: the plan for the request")
        instructions = planner_instructions(prompts.PLANNER, self.services.settings)
        agent = self.model_agent("planner", PlanOutput, instructions, output_retries=0)

        def check(plan: PlanOutput) -> PlanOutput:
            plan = plan.model_copy(update={"items": repair_plan(plan.items)})
            try:
                validate_plan(plan.items)
                for item in plan.items:
                    for path in item.files:
                        confined_path(workspace.path, path)
            except (PlanError, WorkspaceError) as exc:
                raise ModelRetry(f"the plan is not usable: {exc}") from exc
            return plan

        agent.output_validator(check)
        answer = await ask_afresh(
            agent,
            prompts.task_context(state),
            attempts=self.services.settings.output_retries + 1,
            temperature=run.tier[1].temperature,
            what="the plan",
        )
        plan: PlanOutput = answer.output
        document = {
            "request": state.request,
            "summary": plan.summary,
            "items": [item.model_dump(mode="json") for item in plan.items],
        }
        async with workspace.lock:
            await workspace.checkout(state.branch)
            files = workspace.write_files(
                [("plan.yaml", yaml.safe_dump(document, sort_keys=False))]
            )
            commit = await run.commit(files, "plan.yaml")
        created = PlanCreated(
            summary=plan.summary, items=plan.items, commit=commit, complexity=plan.complexity
        )
        return [run.event(created), *await run.completed_change(commit, state.head, files)]
