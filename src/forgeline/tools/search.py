"""Web search for agents and people: DuckDuckGo or SearXNG, rate-limited and cached.

``WebSearch.search`` answers from the cache when the same provider was asked the same
query within ``cache_ttl`` seconds: the cache is ``tool.search.cached`` events in a
``searchcache-<key>`` stream, so it lives in the event store (like the model response
cache, ``llm.metered``) on SQLite and Postgres alike and survives restarts. Otherwise it
waits its turn (``min_interval`` seconds between two requests to one provider) and asks
the provider. Every search, answered or failed, is handed to the recorder as a
``tool.search`` event: the search history.

Back-ends: ``DuckDuckGo`` runs the ``ddgs`` library's DuckDuckGo engine (its HTML
endpoint, parsed by ddgs) against ``duckduckgo_url``; ``Searxng`` reads a SearXNG
instance's JSON API with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from ddgs.engines.duckduckgo import Duckduckgo
from ddgs.exceptions import DDGSException, TimeoutException
from pydantic import BaseModel, ValidationError
from pydantic_ai.toolsets import FunctionToolset

from forgeline.core.events import NewEvent, SearchCached, SearchHit, ToolSearched, utcnow
from forgeline.errors import ConcurrencyError, ConfigError, ForgelineError
from forgeline.observability.tracing import traced
from forgeline.store.base import EventStore
from forgeline.tools.calls import Recorder, ignore
from forgeline.tools.config import SearchConfig

__all__ = [
    "DuckDuckGo",
    "RateLimiter",
    "SearchError",
    "SearchProvider",
    "SearchRateLimited",
    "Searxng",
    "WebSearch",
    "format_hits",
    "provider_for",
    "search_cache_stream",
]


class SearchError(ForgelineError):
    """A search provider could not answer (timeout, HTTP error, an unreadable answer)."""


class SearchRateLimited(SearchError):
    """The provider refused the request for now (HTTP 429, DuckDuckGo's 202)."""


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, max_results: int) -> list[SearchHit]: ...


# ------------------------------------------------------------------ back-ends


class _Engine(Duckduckgo):
    """ddgs's DuckDuckGo engine, keeping the status of its last answer: ddgs reads a
    non-200 answer as "no results", and a rate limit must not look like that."""

    status: int | None = None

    def request(self, *args: Any, **kwargs: Any) -> Any:
        response = self.http_client.request(*args, **kwargs)
        self.status = response.status_code
        return response.text if response.status_code == 200 else None


class DuckDuckGo:
    """DuckDuckGo's HTML endpoint through ddgs (run in a thread: ddgs is synchronous)."""

    name = "duckduckgo"

    def __init__(self, url: str, timeout: float, region: str = "wt-wt") -> None:
        self.url = url
        self.timeout = timeout
        self.region = region

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        return await asyncio.to_thread(self._search, query, max_results)

    def _search(self, query: str, max_results: int) -> list[SearchHit]:
        engine = _Engine(timeout=max(1, math.ceil(self.timeout)))
        engine.search_url = self.url
        try:
            results = engine.search(query, region=self.region)
        except TimeoutException as exc:
            raise SearchError(
                f"DuckDuckGo ({self.url}) did not answer within {self.timeout:g}s; "
                "try again later or raise [search] timeout"
            ) from exc
        except DDGSException as exc:
            raise SearchError(f"DuckDuckGo ({self.url}) could not be reached: {exc}") from exc
        except Exception as exc:  # lxml on a body that is no HTML
            raise SearchError(f"DuckDuckGo's answer could not be read: {exc}") from exc
        if results is None:
            if engine.status in (202, 429):
                raise SearchRateLimited(
                    f"DuckDuckGo is rate-limiting this address (HTTP {engine.status}); "
                    "wait a few minutes, raise [search] min_interval, or use SearXNG"
                )
            raise SearchError(f"DuckDuckGo answered HTTP {engine.status}")
        hits = [SearchHit(title=r.title, url=r.href, snippet=r.body) for r in results if r.href]
        return hits[:max_results]


class _SearxngResult(BaseModel):
    url: str
    title: str = ""
    content: str | None = None


class _SearxngAnswer(BaseModel):
    results: list[_SearxngResult]


class Searxng:
    """A SearXNG instance's JSON API (``/search?format=json``, which the instance must
    allow in its ``search.formats``)."""

    name = "searxng"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        endpoint = f"{self.url}/search"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(endpoint, params={"q": query, "format": "json"})
        except httpx.TimeoutException as exc:
            raise SearchError(
                f"SearXNG ({self.url}) did not answer within {self.timeout:g}s; "
                "try again later or raise [search] timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise SearchError(f"SearXNG ({self.url}) could not be reached: {exc}") from exc
        if response.status_code == 429:
            raise SearchRateLimited(
                f"SearXNG ({self.url}) is rate-limiting this address (HTTP 429); "
                "wait, or raise [search] min_interval"
            )
        if response.status_code != 200:
            raise SearchError(
                f"SearXNG ({self.url}) answered HTTP {response.status_code}"
                + (
                    "; is format=json enabled in its settings?"
                    if response.status_code == 403
                    else ""
                )
            )
        try:
            answer = _SearxngAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise SearchError(
                f"SearXNG ({self.url}) sent an answer that is not its JSON results "
                f"({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']})"
            ) from exc
        hits = [
            SearchHit(title=r.title, url=r.url, snippet=r.content or "") for r in answer.results
        ]
        return hits[:max_results]


def provider_for(config: SearchConfig) -> SearchProvider:
    if config.provider == "searxng":
        if not config.searxng_url:
            raise ConfigError(
                '[search] provider = "searxng" needs searxng_url (the instance\'s base URL)'
            )
        return Searxng(config.searxng_url, config.timeout)
    return DuckDuckGo(config.duckduckgo_url, config.timeout, config.region)


# ------------------------------------------------------------------ rate limit


class RateLimiter:
    """At least ``min_interval`` seconds between the starts of two requests to one
    provider, within this process."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, provider: str, min_interval: float) -> None:
        async with self._locks.setdefault(provider, asyncio.Lock()):
            delay = self._next.get(provider, 0.0) - self.clock()
            if delay > 0:
                await self.sleep(delay)
            self._next[provider] = self.clock() + min_interval


#: Shared by every ``WebSearch`` of the process: the limit is per provider, not per tool.
RATE_LIMITER = RateLimiter()


# ------------------------------------------------------------------ the tool


def search_cache_stream(provider: str, query: str, max_results: int, region: str) -> str:
    body = json.dumps([provider, " ".join(query.split()).lower(), max_results, region])
    return "searchcache-" + hashlib.sha256(body.encode()).hexdigest()


class WebSearch:
    """The search tool: cache, rate limit, provider, history."""

    def __init__(
        self,
        config: SearchConfig,
        store: EventStore,
        *,
        provider: SearchProvider | None = None,
        recorder: Recorder = ignore,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider or provider_for(config)
        self.recorder = recorder
        self.limiter = limiter or RATE_LIMITER
        self.clock = clock

    @traced("search")
    async def search(self, query: str, max_results: int | None = None) -> list[SearchHit]:
        query = query.strip()
        if not query:
            raise SearchError("an empty query: say what to search for")
        limit = max_results or self.config.max_results
        name = self.provider.name
        stream = search_cache_stream(name, query, limit, self.config.region)
        cached, version = await self._cached(stream)
        if cached is not None:
            self.recorder(ToolSearched(provider=name, query=query, hits=cached, cached=True))
            return list(cached)
        await self.limiter.wait(name, self.config.min_interval)
        try:
            hits = await self.provider.search(query, limit)
        except SearchError as exc:
            self.recorder(ToolSearched(provider=name, query=query, error=str(exc)))
            raise
        self.recorder(ToolSearched(provider=name, query=query, hits=tuple(hits)))
        if self.config.cache_ttl > 0:
            await self._keep(stream, version, query, hits)
        return hits

    async def _cached(self, stream: str) -> tuple[tuple[SearchHit, ...] | None, int]:
        if self.config.cache_ttl <= 0:
            return None, 0
        events = await self.store.read_stream(stream)
        if not events:
            return None, 0
        last = events[-1]
        data = last.data
        if not isinstance(data, SearchCached):
            return None, last.version
        expires = last.created_at + timedelta(seconds=min(data.ttl_s, self.config.cache_ttl))
        return (data.hits if self.clock() < expires else None), last.version

    async def _keep(self, stream: str, version: int, query: str, hits: list[SearchHit]) -> None:
        event = NewEvent(
            stream_id=stream,
            data=SearchCached(
                provider=self.provider.name,
                query=query,
                hits=tuple(hits),
                ttl_s=self.config.cache_ttl,
            ),
            correlation_id=stream,
            actor="search",
            created_at=self.clock(),
        )
        # another search may have kept the same answer first
        with contextlib.suppress(ConcurrencyError):
            await self.store.append(stream, [event], expected_version=version)

    def toolset(self) -> FunctionToolset[Any]:
        """A pydantic-ai toolset with one tool, ``web_search(query)``."""

        async def web_search(query: str) -> str:
            """Search the web and get the top results: title, URL and a snippet each.

            Args:
                query: What to search for, as you would type it into a search engine.
            """
            try:
                return format_hits(await self.search(query))
            except SearchError as exc:
                return f"error: {exc}\n"

        return FunctionToolset([web_search])


def format_hits(hits: list[SearchHit]) -> str:
    """Hits as numbered plain text, for a model or a terminal."""
    if not hits:
        return "no results\n"
    lines = []
    for number, hit in enumerate(hits, 1):
        lines.append(f"{number}. {hit.title or hit.url}\n   {hit.url}")
        if hit.snippet:
            lines.append(f"   {hit.snippet}")
    return "\n".join(lines) + "\n"
