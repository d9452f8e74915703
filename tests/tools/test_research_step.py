"""The research plan step: a planned ``research`` item searches (a local server answering
like SearXNG), fetches a local page, commits ``research/<topic>.md`` with numbered
references, records its tool calls with the step's result, and the coder's next prompt
gets the notes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import Model

from forgeline.config import Settings
from forgeline.core.events import (
    Event,
    NodeKind,
    PageFetched,
    PlanItem,
    ResearchWritten,
    ToolSearched,
    task_stream,
)
from forgeline.core.task import TaskState
from forgeline.executors.patterns import PatternResult
from forgeline.executors.router import route
from forgeline.llm.gateway import ModelRegistry
from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.observability.tracing import Tracing
from forgeline.pipeline.research import PLANNER_LINE, planner_instructions
from forgeline.runtime import open_runtime
from forgeline.sandbox.local import LocalSpawner
from forgeline.store.base import EventStore
from forgeline.tools.toolkit import Toolkit
from forgeline.workspace.git import GitWorkspace
from tests.pipeline import harness
from tests.scripts import research_project
from tests.tools.peers import Peer, Reply, searxng
from tests.tools.test_fetch import ARTICLE, HTML, PARAGRAPHS

REQUEST = "build a todo CLI that stores items in todo.json, the way tomlkit keeps files tidy"


@dataclass
class Researched:
    task_id: str
    state: TaskState
    events: list[Event]
    worktree: Path
    coder_prompts: list[str] = field(default_factory=list)
    planner_instructions: list[str] = field(default_factory=list)

    def of_type(self, *types: str) -> list[Event]:
        return [e for e in self.events if e.type in types]


def research_settings(tmp_path: Path, peer: Peer, **values: Any) -> Settings:
    store = tmp_path / "ws" / ".forgeline" / "forgeline.db"
    return Settings.model_validate(
        {
            "workspaces_root": tmp_path,
            "store": f"sqlite:///{store}",
            "workspace_venv": False,
            "mode": "sequential",
            "search": {
                "provider": "searxng",
                "searxng_url": peer.url,
                "min_interval": 0,
                "timeout": 5,
            },
            "fetch": {"private_hosts": ["localhost"], "timeout": 5},
            "research": {"enabled": True},
            **values,
        }
    )


def _recording_models(done: Researched) -> dict[str, Model]:
    def coder(messages: list[ModelMessage]) -> dict[str, Any]:
        done.coder_prompts.append(prompt_text(messages))
        return research_project.code_for(messages)

    def planner(messages: list[ModelMessage]) -> dict[str, Any]:
        done.planner_instructions.append(str(getattr(messages[-1], "instructions", "")))
        return research_project.PLAN

    return research_project.models(
        planner=scripted_model([planner], name="research-planner"),
        coder=scripted_model([coder], name="research-coder"),
    )


async def research_task(
    tmp_path: Path,
    peer: Peer,
    *,
    tracing: Tracing | None = None,
    **values: Any,
) -> Researched:
    """The research project's request run to its end in sequential mode: the search
    answers with the local page ``/post``."""
    searxng(peer, "/post")
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    done = Researched("", TaskState(task_id=""), [], tmp_path)
    settings = research_settings(tmp_path, peer, **values)
    async with open_runtime(
        settings,
        models=ModelRegistry(_recording_models(done)),  # type: ignore[arg-type]
        spawner=LocalSpawner(),
        tracing=tracing,
    ) as runtime:
        task_id = await runtime.submit(REQUEST, tmp_path / "ws")
        state = await harness.drive(runtime, task_id, "sequential")
        done.task_id, done.state = task_id, state
        done.events = await runtime.store.read_stream(task_stream(task_id))
        done.worktree = runtime.worktree(state).path
    return done


async def test_the_research_step_cites_and_reaches_the_coder(tmp_path: Path, peer: Peer) -> None:
    done = await research_task(tmp_path, peer)

    assert done.state.status == "completed", done.state.failure
    assert [e.type for e in done.events] == research_project.EVENT_CHAIN
    page = f"http://localhost:{peer.port}/post"
    # the note, committed on the task's branch, cites the page it read
    note = (done.worktree / "research" / f"{research_project.SLUG}.md").read_text()
    assert note.startswith(f"# {research_project.TOPIC}\n")
    assert "### [1] Editing TOML with tomlkit" in note
    assert PARAGRAPHS[0][:60] in note
    assert f"1. Editing TOML with tomlkit. <{page}> (fetched " in note
    [research_done] = [
        e for e in done.of_type("plan.item.completed") if getattr(e.data, "item_id", "") == "r"
    ]
    assert research_done.data.files == (f"research/{research_project.SLUG}.md",)  # type: ignore[union-attr]
    # its tool calls were recorded with its result: caused by its dispatch, then chained
    dispatch = research_done.causation_id
    search, fetch, written = done.of_type("tool.search", "tool.fetch", "tool.research")
    assert isinstance(search.data, ToolSearched) and search.data.provider == "searxng"
    assert [hit.url for hit in search.data.hits] == [page]
    assert isinstance(fetch.data, PageFetched) and fetch.data.error is None
    assert fetch.data.title == "Editing TOML with tomlkit"
    assert isinstance(written.data, ResearchWritten) and written.data.references == (page,)
    assert search.causation_id == dispatch
    assert fetch.causation_id == search.id and written.causation_id == fetch.id
    assert {search.actor, fetch.actor, written.actor} == {"coder"}
    # the coder's prompt for the next step had the notes; its code quotes the reference
    code_prompt = next(p for p in done.coder_prompts if "Implement step [a]" in p)
    assert "Research notes (from the web" in code_prompt
    assert f"1. Editing TOML with tomlkit. <{page}>" in code_prompt
    first_line = (done.worktree / "todo.py").read_text().splitlines()[0]
    assert first_line.startswith(f"# Research: Editing TOML with tomlkit. <{page}>")
    # the planner was told it may plan a research step
    assert PLANNER_LINE in done.planner_instructions[0]


async def step(
    tmp_path: Path, peer: Peer, store: EventStore, **values: Any
) -> tuple[PatternResult, Toolkit]:
    """The research pattern on a planned item, as the coder runs it."""
    item = PlanItem(id="r", title="research", kind=NodeKind.TOOL_CALL, description="tomlkit")
    found = route(item)
    assert found is not None and found.name == "research"
    tools = Toolkit(research_settings(tmp_path, peer, **values), store)
    result = await found.executor.execute(found.context(GitWorkspace(tmp_path), tools))
    return result, tools


async def test_research_that_reads_nothing_completes_without_a_note(
    tmp_path: Path, peer: Peer, store: EventStore
) -> None:
    searxng(peer, "/gone")  # answers 404

    result, tools = await step(tmp_path, peer, store)

    assert result.change is None
    assert result.summary.startswith("nothing to cite: no source could be read for 'tomlkit'")
    search, fetch = tools.calls.records
    assert isinstance(search, ToolSearched) and len(search.hits) == 1
    assert isinstance(fetch, PageFetched) and "HTTP 404" in (fetch.error or "")


async def test_research_off_reaches_nothing(tmp_path: Path, peer: Peer, store: EventStore) -> None:
    searxng(peer, "/post")

    result, tools = await step(tmp_path, peer, store, research={"enabled": False})

    assert result.change is None and "[research] enabled is false" in result.summary
    assert tools.calls.records == [] and peer.requests == []
    settings = research_settings(tmp_path, peer, research={"enabled": False})
    assert planner_instructions("PLAN", settings) == "PLAN"
    assert PLANNER_LINE in planner_instructions("PLAN", research_settings(tmp_path, peer))


def test_planned_research_step_inputs() -> None:
    # the explicit form a planner may use instead of a tool_call titled "research"
    item = PlanItem(
        id="r",
        title="read first",
        description="pattern:research " + json.dumps({"topic": "RFC 6749", "sources": 2}),
    )
    found = route(item)
    assert found is not None and found.name == "research"
    assert dict(found.inputs) == {"topic": "RFC 6749", "sources": 2}
