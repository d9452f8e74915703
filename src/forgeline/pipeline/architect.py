"""Architect: plan.created -> architecture.proposed, committing an ADR under docs/adr/."""

from __future__ import annotations

import re

from pydantic_ai import ModelRetry

from forgeline.core.events import ArchitectureProposed, NewEvent
from forgeline.errors import WorkspaceError
from forgeline.llm.outputs import ArchitectureOutput
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.fresh import ask_afresh
from forgeline.workspace.git import confined_path


def adr_name(existing: list[str], title: str) -> str:
    numbers = [int(m.group(1)) for name in existing if (m := re.match(r"(\d{4})-", name))]
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50] or "design"
    return f"docs/adr/{max(numbers, default=0) + 1:04d}-{slug}.md"


class ArchitectAgent(StageAgent):
    stage = "architect"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        await run.begin_change("an architecture decision record")
        agent = self.model_agent(
            "architect", ArchitectureOutput, prompts.ARCHITECT, output_retries=0
        )

        def check(design: ArchitectureOutput) -> ArchitectureOutput:
            try:
                for spec in design.files:
                    confined_path(workspace.path, spec.path)
            except WorkspaceError as exc:
                raise ModelRetry(f"the design names a bad file: {exc}") from exc
            if design.run.kind == "web" and not any("{port}" in a for a in design.run.command):
                raise ModelRetry('a web run command must contain "{port}" where the port goes')
            return design

        agent.output_validator(check)
        answer = await ask_afresh(
            agent,
            prompts.task_context(state),
            attempts=self.services.settings.output_retries + 1,
            temperature=run.tier[1].temperature,
            what="the design",
        )
        design: ArchitectureOutput = answer.output
        async with workspace.lock:
            await workspace.checkout(state.branch)
            adr_dir = workspace.path / "docs" / "adr"
            path = adr_name(sorted(p.name for p in adr_dir.glob("*.md")), state.plan_summary)
            body = (
                f"# {state.plan_summary or state.request}\n\n"
                f"Status: accepted\n\n## Summary\n\n{design.summary}\n\n{design.decision}\n"
            )
            files = workspace.write_files([(path, body)])
            commit = await run.commit(files, f"architecture decision record {path}")
        proposed = ArchitectureProposed(
            summary=design.summary,
            adr_path=path,
            files=design.files,
            run=design.run,
            commit=commit,
        )
        return [run.event(proposed), *await run.completed_change(commit, state.head, files)]
