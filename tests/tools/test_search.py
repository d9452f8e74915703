"""Web search against a local server that answers like DuckDuckGo's HTML endpoint (which
ddgs's DuckDuckGo engine posts to) and like SearXNG's JSON API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.config import load_settings
from forgeline.core.events import SearchCached, ToolSearched
from forgeline.errors import ConfigError
from forgeline.store.base import EventStore
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import SearchConfig
from forgeline.tools.search import (
    RateLimiter,
    SearchError,
    SearchRateLimited,
    WebSearch,
    provider_for,
    search_cache_stream,
)
from tests.tools.peers import Peer, Reply, Request

DDG_PAGE = """<!DOCTYPE html><html><body><div id="links" class="results">
<div class="result results_links results_links_deep web-result">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a"
      href="https://docs.python.org/3/library/asyncio.html"
      >asyncio &mdash; Asynchronous I/O</a></h2>
    <a class="result__snippet" href="https://docs.python.org/3/library/asyncio.html">asyncio is a
      library to write <b>concurrent</b> code using the async/await syntax.</a>
  </div>
</div>
<div class="result results_links results_links_deep web-result">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a class="result__a"
      href="https://realpython.com/async-io-python/">Async IO in Python</a></h2>
    <a class="result__snippet" href="https://realpython.com/async-io-python/">A walkthrough.</a>
  </div>
</div>
</div></body></html>"""

SEARXNG_ANSWER = {
    "query": "pydantic",
    "number_of_results": 2,
    "results": [
        {"url": "https://docs.pydantic.dev/", "title": "Pydantic", "content": "Data validation"},
        {"url": "https://github.com/pydantic/pydantic", "title": "GitHub", "content": None},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def config(peer: Peer, **values: object) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "duckduckgo_url": f"{peer.url}/html/",
            "searxng_url": peer.url,
            "min_interval": 0,
            "timeout": 2,
            **values,
        }
    )


def ddg_form(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode())


async def test_duckduckgo_results_come_through_ddgs(peer: Peer, store: EventStore) -> None:
    peer.route("POST /html/", Reply(200, DDG_PAGE, {"Content-Type": "text/html"}))
    calls = ToolCalls()
    tool = WebSearch(config(peer), store, recorder=calls)

    hits = await tool.search("python asyncio")

    assert [h.url for h in hits] == [
        "https://docs.python.org/3/library/asyncio.html",
        "https://realpython.com/async-io-python/",
    ]
    assert hits[0].title == "asyncio — Asynchronous I/O"
    assert "concurrent code" in hits[0].snippet
    assert ddg_form(peer.requests[0])["q"] == ["python asyncio"]
    [record] = calls.records
    assert isinstance(record, ToolSearched)
    assert record.provider == "duckduckgo" and not record.cached and len(record.hits) == 2


async def test_max_results_cuts_the_list(peer: Peer, store: EventStore) -> None:
    peer.route("POST /html/", Reply(200, DDG_PAGE))
    hits = await WebSearch(config(peer), store).search("python asyncio", max_results=1)
    assert len(hits) == 1


async def test_duckduckgo_empty_page_is_no_results(peer: Peer, store: EventStore) -> None:
    peer.route("POST /html/", Reply(200, "<html><body><p>No results.</p></body></html>"))
    assert await WebSearch(config(peer), store).search("zzzz qqq") == []


@pytest.mark.parametrize("status", [202, 429])
async def test_duckduckgo_rate_limit_is_a_clear_error(
    peer: Peer, store: EventStore, status: int
) -> None:
    peer.route("POST /html/", Reply(status, "<html>anomaly</html>"))
    calls = ToolCalls()
    with pytest.raises(SearchRateLimited, match="rate-limiting"):
        await WebSearch(config(peer), store, recorder=calls).search("python")
    [record] = calls.records
    assert isinstance(record, ToolSearched) and "rate-limiting" in (record.error or "")


async def test_duckduckgo_server_error(peer: Peer, store: EventStore) -> None:
    peer.route("POST /html/", Reply(500, "boom"))
    with pytest.raises(SearchError, match="HTTP 500"):
        await WebSearch(config(peer), store).search("python")


async def test_duckduckgo_slow_answer_times_out(peer: Peer, store: EventStore) -> None:
    peer.route("POST /html/", Reply(200, DDG_PAGE, delay=1.5))
    with pytest.raises(SearchError, match="did not answer within 1s"):
        await WebSearch(config(peer, timeout=1), store).search("python")


async def test_searxng_json_results(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps(SEARXNG_ANSWER)))
    tool = WebSearch(config(peer, provider="searxng"), store)

    hits = await tool.search("pydantic")

    assert [(h.title, h.url, h.snippet) for h in hits] == [
        ("Pydantic", "https://docs.pydantic.dev/", "Data validation"),
        ("GitHub", "https://github.com/pydantic/pydantic", ""),
    ]
    assert peer.requests[0].query == {"q": ["pydantic"], "format": ["json"]}


async def test_searxng_empty(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps({"query": "x", "results": []})))
    assert await WebSearch(config(peer, provider="searxng"), store).search("x") == []


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply(429, "Too Many Requests"), SearchRateLimited, "HTTP 429"),
        (Reply(403, "Forbidden"), SearchError, "format=json enabled"),
        (Reply(200, "<html>not json</html>"), SearchError, "not its JSON results"),
        (Reply(200, json.dumps({"results": [{"title": "no url"}]})), SearchError, "not its JSON"),
        (Reply(200, json.dumps(SEARXNG_ANSWER), delay=1.5), SearchError, "1s"),
    ],
    ids=["429", "403", "html", "malformed", "slow"],
)
async def test_searxng_bad_answers(
    peer: Peer, store: EventStore, reply: Reply, error: type[Exception], message: str
) -> None:
    peer.route("GET /search", reply)
    tool = WebSearch(config(peer, provider="searxng", timeout=1), store)
    with pytest.raises(error, match=message):
        await tool.search("x")


async def test_unreachable_provider(store: EventStore) -> None:
    tool = WebSearch(SearchConfig(provider="searxng", searxng_url="http://127.0.0.1:9"), store)
    with pytest.raises(SearchError, match="could not be reached"):
        await tool.search("x")


def test_searxng_needs_its_url() -> None:
    with pytest.raises(ConfigError, match="searxng_url"):
        provider_for(SearchConfig(provider="searxng"))


async def test_cache_answers_until_it_expires(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps(SEARXNG_ANSWER)))
    clock = Clock()
    calls = ToolCalls()
    settings = config(peer, provider="searxng", cache_ttl=3600)
    tool = WebSearch(settings, store, recorder=calls, clock=clock)

    first = await tool.search("pydantic")
    # a new tool (another process, later) still finds the answer in the store
    again = await WebSearch(settings, store, recorder=calls, clock=clock).search("  Pydantic ")
    assert again == first
    assert len(peer.requests) == 1
    clock.now += timedelta(hours=2)
    await tool.search("pydantic")
    assert len(peer.requests) == 2

    assert [r.cached for r in calls.records if isinstance(r, ToolSearched)] == [
        False,
        True,
        False,
    ]
    stream = search_cache_stream("searxng", "pydantic", 8, "wt-wt")
    kept = await store.read_stream(stream)
    assert [type(e.data) for e in kept] == [SearchCached, SearchCached]


async def test_no_cache_with_ttl_zero(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps(SEARXNG_ANSWER)))
    tool = WebSearch(config(peer, provider="searxng", cache_ttl=0), store)
    await tool.search("pydantic")
    await tool.search("pydantic")
    assert len(peer.requests) == 2


async def test_rate_limiter_spaces_requests_per_provider() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(clock=lambda: now[0], sleep=sleep)
    await limiter.wait("duckduckgo", 2.0)
    await limiter.wait("duckduckgo", 2.0)
    await limiter.wait("searxng", 2.0)  # another provider does not wait
    now[0] += 0.5
    await limiter.wait("duckduckgo", 2.0)
    assert slept == [2.0, 1.5]


async def test_limiter_is_used_before_each_provider_request(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps(SEARXNG_ANSWER)))
    waited: list[tuple[str, float]] = []

    class Recording(RateLimiter):
        async def wait(self, provider: str, min_interval: float) -> None:
            waited.append((provider, min_interval))

    tool = WebSearch(config(peer, provider="searxng", min_interval=5), store, limiter=Recording())
    await tool.search("a")
    await tool.search("a")  # from the cache: no request, no wait
    await tool.search("b")
    assert waited == [("searxng", 5.0), ("searxng", 5.0)]


async def test_agent_calls_web_search(peer: Peer, store: EventStore) -> None:
    peer.route("GET /search", Reply(200, json.dumps(SEARXNG_ANSWER)))
    calls = ToolCalls()
    tool = WebSearch(config(peer, provider="searxng"), store, recorder=calls)
    seen: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returned = [p.content for m in messages for p in m.parts if p.part_kind == "tool-return"]
        if returned:
            seen.extend(str(r) for r in returned)
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("web_search", {"query": "pydantic"})])

    agent = Agent(FunctionModel(model), toolsets=[tool.toolset()])
    result = await agent.run("find pydantic docs")

    assert result.output == "done"
    assert "1. Pydantic\n   https://docs.pydantic.dev/" in seen[0]
    events = calls.events(
        stream_id="task-t1",
        correlation_id="t1",
        causation_id="cause",
        actor="planner",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert [e.type for e in events] == ["tool.search"]
    assert events[0].causation_id == "cause"


def test_search_settings_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FORGELINE_SEARCH__PROVIDER", "searxng")
    monkeypatch.setenv("FORGELINE_SEARCH__SEARXNG_URL", "http://search.internal")
    settings = load_settings(tmp_path)
    assert settings.search.provider == "searxng"
    assert settings.search.searxng_url == "http://search.internal"
