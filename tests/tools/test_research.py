"""Research notes: a SearXNG answer pointing at local pages, fetched and cited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import PageFetched, ResearchWritten, ToolSearched
from forgeline.store.base import EventStore
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import FetchConfig, SearchConfig
from forgeline.tools.fetch import Fetcher
from forgeline.tools.research import Research, ResearchError, topic_slug
from forgeline.tools.search import WebSearch
from tests.tools.peers import Peer, Reply
from tests.tools.test_fetch import ARTICLE, HTML, PARAGRAPHS

FIXED = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)


def tools(peer: Peer, store: EventStore, calls: ToolCalls) -> Research:
    search = WebSearch(
        SearchConfig(provider="searxng", searxng_url=peer.url, min_interval=0),
        store,
        recorder=calls,
    )
    fetcher = Fetcher(
        FetchConfig(private_hosts=("localhost",), timeout=3), recorder=calls, clock=lambda: FIXED
    )
    return Research(search, fetcher, recorder=calls)


def answer(peer: Peer, *paths: str) -> Reply:
    results = [
        {"url": f"http://localhost:{peer.port}{p}", "title": p, "content": ""} for p in paths
    ]
    return Reply(200, json.dumps({"query": "q", "results": results}))


async def test_note_with_numbered_references(peer: Peer, store: EventStore, tmp_path: Path) -> None:
    peer.route("GET /search", answer(peer, "/post", "/forbidden", "/notes", "/post"))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    peer.route("GET /robots.txt", Reply(200, "User-agent: *\nDisallow: /forbidden\n"))
    peer.route(
        "GET /notes",
        Reply(200, "tomlkit notes\n\nUse tomlkit.dumps.", {"Content-Type": "text/plain"}),
    )
    calls = ToolCalls()

    note = await tools(peer, store, calls).run(tmp_path, "tomlkit: editing TOML")

    assert note.path == "research/tomlkit-editing-toml.md"
    text = (tmp_path / note.path).read_text()
    assert text == note.markdown
    assert text.startswith("# tomlkit: editing TOML\n")
    assert "### [1] Editing TOML with tomlkit" in text
    assert PARAGRAPHS[0][:60] in text
    assert "### [2] tomlkit notes" in text
    post, notes = (f"http://localhost:{peer.port}{p}" for p in ("/post", "/notes"))
    assert (
        f"1. Editing TOML with tomlkit. <{post}> (fetched 2026-03-04 05:06 UTC)\n"
        f"2. tomlkit notes. <{notes}> (fetched 2026-03-04 05:06 UTC)\n"
    ) in text
    assert "/forbidden" not in text
    assert note.summary.startswith("## Sources")
    kinds = [type(r).__name__ for r in calls.records]
    assert kinds == ["ToolSearched", "PageFetched", "PageFetched", "PageFetched", "ResearchWritten"]
    refused = calls.records[2]
    assert isinstance(refused, PageFetched) and "robots" in (refused.error or "")
    written = calls.records[-1]
    assert isinstance(written, ResearchWritten) and written.references == (post, notes)
    assert isinstance(calls.records[0], ToolSearched)


async def test_sources_limit_and_summary(peer: Peer, store: EventStore, tmp_path: Path) -> None:
    peer.route("GET /search", answer(peer, "/a", "/b"))
    peer.route("GET /a", Reply(200, ARTICLE, HTML))
    peer.route("GET /b", Reply(200, ARTICLE, HTML))
    note = await tools(peer, store, ToolCalls()).run(
        tmp_path, "TOML", sources=1, summary="Use tomlkit [1]."
    )
    assert len(note.pages) == 1
    assert note.markdown.startswith("# TOML\n\nUse tomlkit [1].\n\n## Sources")


async def test_nothing_readable_is_a_clear_error(
    peer: Peer, store: EventStore, tmp_path: Path
) -> None:
    peer.route("GET /search", answer(peer, "/gone"))
    peer.route("GET /gone", Reply(404, "no"))
    with pytest.raises(ResearchError, match=r"no source could be read for 'x'.*HTTP 404"):
        await tools(peer, store, ToolCalls()).run(tmp_path, "x")
    assert not (tmp_path / "research").exists()


def test_topic_slug() -> None:
    assert topic_slug("The OAuth 2.0 spec (RFC 6749)") == "the-oauth-2-0-spec-rfc-6749"
    assert topic_slug("../../etc/passwd") == "etc-passwd"
    with pytest.raises(ResearchError, match="no letters or digits"):
        topic_slug("???")


async def test_agent_researches_and_cites(peer: Peer, store: EventStore, tmp_path: Path) -> None:
    peer.route("GET /search", answer(peer, "/post"))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    post = f"http://localhost:{peer.port}/post"
    calls = ToolCalls()
    steps = iter(
        [
            ToolCallPart("write_research_note", {"topic": "t", "summary": "s", "urls": [post]}),
            ToolCallPart("web_search", {"query": "tomlkit"}),
            ToolCallPart("fetch_page", {"url": post}),
            ToolCallPart(
                "write_research_note",
                {"topic": "tomlkit", "summary": "tomlkit keeps comments [1].", "urls": [post]},
            ),
        ]
    )
    answers: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answers.extend(str(p.content) for p in messages[-1].parts if p.part_kind == "tool-return")
        step = next(steps, None)
        return ModelResponse(parts=[step or TextPart("done")])

    agent = Agent(FunctionModel(model), toolsets=[tools(peer, store, calls).toolset(tmp_path)])
    await agent.run("research tomlkit")

    assert answers[0].startswith("error: fetch these pages first")
    assert answers[-1] == "wrote research/tomlkit.md with 1 reference(s)\n"
    note = (tmp_path / "research" / "tomlkit.md").read_text()
    assert note.startswith("# tomlkit\n\ntomlkit keeps comments [1].\n")
    assert f"1. Editing TOML with tomlkit. <{post}>" in note
    assert [r.type for r in calls.records] == ["tool.search", "tool.fetch", "tool.research"]
