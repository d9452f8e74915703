"""Planner: task.initiated -> plan.created, committing plan.yaml."""

from __future__ import annotations

import yaml
from pydantic_ai import ModelRetry

from forgeline.core.events import NewEvent, PlanCreated
from forgeline.core.plan import PlanError, repair_plan, validate_plan
from forgeline.errors import WorkspaceError
from forgeline.llm.outputs import PlanOutput
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.research import planner_instructions
from forgeline.workspace.git import confined_path


class PlannerAgent(StageAgent):
    stage = "planner"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        await run.begin_change("plan.yaml: the plan for the request")
        instructions = planner_instructions(prompts.PLANNER, self.services.settings)
        agent = self.model_agent("planner", PlanOutput, instructions)

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
        plan: PlanOutput = (await agent.run(f"Request: {state.request}")).output
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
        created = PlanCreated(summary=plan.summary, items=plan.items, commit=commit)
        return [run.event(created), *await run.completed_change(commit, state.head, files)]
