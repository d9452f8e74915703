"""``research``: a plan step that reads about a library, an API or a standard before the
code is written, and leaves ``research/<topic>.md`` with numbered references.

The planner schedules it (when ``[research] enabled``) as a ``tool_call`` item titled
``research`` whose description is the topic, or explicitly as ``pattern:research`` with
``{"topic": ..., "queries": [...], "sources": N}``. The step searches the web, fetches
the best pages (the fetch tool's limits, robots.txt and address checks apply) and
returns the note as a change for the patch engine; the coder commits it like any
pattern's change, and later steps' prompts get its summary
(``forgeline.pipeline.research.research_notes``). Its search, fetch and research calls
are ``tool.*`` records in the stage run's ``Toolkit``, recorded with the step's result.

Research is advice: when it is off, or nothing could be read (no network, nothing
found), the step completes without a note instead of failing the task.
"""

from __future__ import annotations

from pydantic import Field

from forgeline.core.events import FileWrite
from forgeline.executors.patterns.base import (
    Inputs,
    PatternContext,
    PatternError,
    PatternExecutor,
    PatternResult,
)
from forgeline.llm.outputs import CodeChange
from forgeline.tools.research import ResearchError

__all__ = ["ResearchExecutor", "ResearchInputs"]


class ResearchInputs(Inputs):
    topic: str | None = Field(
        default=None,
        description="What to read about; names the note. Default: the item's description.",
    )
    queries: tuple[str, ...] = Field(
        default=(), description="Web searches to run (default: the topic itself)."
    )
    sources: int | None = Field(
        default=None, ge=1, le=10, description="Pages to read (default: [research] sources)."
    )


class ResearchExecutor(PatternExecutor[ResearchInputs]):
    name = "research"
    description = "Search the web, read the best pages and write research/<topic>.md with cites."
    inputs_model = ResearchInputs

    async def run(self, inputs: ResearchInputs, context: PatternContext) -> PatternResult:
        item = context.item
        topic = (inputs.topic or (item.description or item.title if item else "")).strip()
        if not topic:
            raise PatternError("research: give a topic (the item's description)")
        tools = context.tools
        if tools is None:
            raise PatternError("research: this step has no web tools to use")
        if not tools.research_enabled:
            return PatternResult(
                pattern=self.name,
                summary=f"research on {topic!r} skipped: [research] enabled is false",
            )
        research = tools.research
        sources = inputs.sources or tools.settings.research.sources
        try:
            pages = await research.gather(topic, queries=list(inputs.queries), sources=sources)
        except ResearchError as exc:
            return PatternResult(pattern=self.name, summary=f"nothing to cite: {exc}")
        note = research.note(topic, pages)
        summary = f"research note {note.path} with {len(pages)} reference(s)"
        return PatternResult(
            pattern=self.name,
            summary=summary,
            change=CodeChange(
                summary=summary, files=(FileWrite(path=note.path, content=note.markdown),)
            ),
        )
