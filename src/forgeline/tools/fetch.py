"""Fetching a page for research: limits, robots.txt, main text, citation.

``Fetcher.fetch(url)`` follows at most ``max_redirects`` redirects itself, and for every
hop: only http and https; the host's robots.txt honoured for ``user_agent`` (fetched once
per origin, through the same guarded client); the connection made only to an address
``addresses.AddressPolicy`` allows (checked on the resolved IP, at connect time). The
answer must be 2xx, of an allowed content type, at most ``max_bytes`` (announced or
read), and the whole fetch must finish within ``timeout`` seconds. The main text is
extracted with trafilatura (boilerplate such as navigation and footers dropped) as
Markdown, and returned with a ``Citation``: URL, title, fetched-at.

Every fetch, refused or not, is handed to the recorder as a ``tool.fetch`` event.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import trafilatura
from pydantic_ai.toolsets import FunctionToolset

from forgeline.core.events import PageFetched, utcnow
from forgeline.errors import ForgelineError
from forgeline.observability.tracing import traced
from forgeline.tools.addresses import AddressPolicy, AddressRefused, guarded_transport
from forgeline.tools.calls import Recorder, ignore
from forgeline.tools.config import FetchConfig

__all__ = ["Citation", "FetchError", "FetchedPage", "Fetcher", "extract_text"]

_REDIRECTS = (301, 302, 303, 307, 308)
_ROBOTS_MAX_BYTES = 512_000


class FetchError(ForgelineError):
    """A page that could not or may not be fetched; the message says which limit or rule."""


@dataclass(frozen=True)
class Citation:
    url: str
    title: str
    fetched_at: datetime

    def reference(self) -> str:
        """One line for a list of references."""
        title = self.title or self.url
        return f"{title}. <{self.url}> (fetched {self.fetched_at:%Y-%m-%d %H:%M} UTC)"


@dataclass(frozen=True)
class FetchedPage:
    citation: Citation
    text: str
    content_type: str
    status: int
    bytes: int

    def for_model(self, max_chars: int) -> str:
        text = self.text if len(self.text) <= max_chars else self.text[:max_chars] + "\n[...]"
        c = self.citation
        return (
            f"Title: {c.title}\nURL: {c.url}\nFetched: {c.fetched_at:%Y-%m-%dT%H:%M}Z\n\n{text}\n"
        )


def _media_type(header: str) -> tuple[str, str | None]:
    message = Message()
    message["content-type"] = header
    return message.get_content_type(), message.get_content_charset()


def extract_text(body: str, url: str, media_type: str) -> tuple[str, str]:
    """The main text (Markdown) and the title of a page."""
    if media_type not in ("text/html", "application/xhtml+xml"):
        first = next((line.strip("# ").strip() for line in body.splitlines() if line.strip()), "")
        return body.strip(), first[:200]
    text = trafilatura.extract(
        body, url=url, output_format="markdown", include_comments=False, include_tables=True
    )
    metadata = trafilatura.extract_metadata(body, default_url=url)
    title = (metadata.title if metadata is not None else None) or ""
    return (text or "").strip(), title.strip()


class Fetcher:
    """The fetch tool."""

    def __init__(
        self,
        config: FetchConfig,
        *,
        recorder: Recorder = ignore,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.clock = clock
        self.policy = AddressPolicy(config.allow_private, config.private_hosts)
        self._transport = transport
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}

    @traced("fetch")
    async def fetch(self, url: str) -> FetchedPage:
        try:
            async with asyncio.timeout(self.config.timeout):
                page = await self._fetch(url)
        except TimeoutError:
            error = FetchError(
                f"{url} did not answer within {self.config.timeout:g}s ([fetch] timeout)"
            )
            self.recorder(PageFetched(url=url, error=str(error)))
            raise error from None
        except FetchError as exc:
            self.recorder(PageFetched(url=url, error=str(exc)))
            raise
        self.recorder(
            PageFetched(
                url=url,
                final_url=page.citation.url,
                status=page.status,
                title=page.citation.title,
                content_type=page.content_type,
                bytes=page.bytes,
                chars=len(page.text),
                sha256=hashlib.sha256(page.text.encode()).hexdigest(),
                fetched_at=page.citation.fetched_at,
            )
        )
        return page

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport or guarded_transport(self.policy),
            timeout=self.config.timeout,
            follow_redirects=False,
            headers={"User-Agent": self.config.user_agent},
        )

    async def _fetch(self, url: str) -> FetchedPage:
        async with self._client() as client:
            current = url
            for _ in range(self.config.max_redirects + 1):
                _check_scheme(current)
                if self.config.robots and not await self._allowed(client, current):
                    raise FetchError(
                        f"{current}: the site's robots.txt forbids fetching it "
                        f"(user agent {self.config.user_agent!r})"
                    )
                async with self._stream(client, current) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    return await self._page(current, response)
        raise FetchError(
            f"{url}: more than {self.config.max_redirects} redirects ([fetch] max_redirects)"
        )

    def _stream(self, client: httpx.AsyncClient, url: str) -> Any:
        try:
            return _Guarded(client.stream("GET", url), url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"{url} is not a URL that can be fetched: {exc}") from exc

    async def _page(self, url: str, response: httpx.Response) -> FetchedPage:
        if not 200 <= response.status_code < 300:
            raise FetchError(f"{url} answered HTTP {response.status_code}")
        media_type, charset = _media_type(response.headers.get("content-type", ""))
        if media_type not in self.config.content_types:
            raise FetchError(
                f"{url} is {media_type}, not a page to read "
                f"(allowed: {', '.join(self.config.content_types)}; [fetch] content_types)"
            )
        body = await _read_limited(response, self.config.max_bytes, url)
        text, title = await asyncio.to_thread(
            extract_text, body.decode(charset or "utf-8", errors="replace"), url, media_type
        )
        if not text:
            raise FetchError(f"{url}: no main text could be extracted from the page")
        citation = Citation(url=url, title=title, fetched_at=self.clock())
        return FetchedPage(citation, text, media_type, response.status_code, len(body))

    async def _allowed(self, client: httpx.AsyncClient, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = await self._read_robots(client, origin + "/robots.txt")
        parser = self._robots[origin]
        return parser is None or parser.can_fetch(self.config.user_agent, url)

    async def _read_robots(
        self, client: httpx.AsyncClient, url: str
    ) -> urllib.robotparser.RobotFileParser | None:
        """The origin's rules; None (everything allowed) when it has no robots.txt (4xx),
        as RFC 9309 says. A server error counts as "disallow all"."""
        parser = urllib.robotparser.RobotFileParser(url)
        for _ in range(self.config.max_redirects + 1):
            _check_scheme(url)
            async with self._stream(client, url) as response:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if 400 <= response.status_code < 500:
                    return None
                if response.status_code != 200:
                    break
                body = await _read_limited(response, _ROBOTS_MAX_BYTES, url)
                parser.parse(body.decode("utf-8", errors="replace").splitlines())
                return parser
        parser.parse(["User-agent: *", "Disallow: /"])
        return parser

    def toolset(self) -> FunctionToolset[Any]:
        """A pydantic-ai toolset with one tool, ``fetch_page(url)``."""

        async def fetch_page(url: str) -> str:
            """Fetch a web page and get its main text with its title and URL, to cite.

            Args:
                url: The page's full http(s) URL, e.g. one a web search returned.
            """
            try:
                return (await self.fetch(url)).for_model(self.config.max_chars)
            except FetchError as exc:
                return f"error: {exc}\n"

        return FunctionToolset([fetch_page])


class _Guarded:
    """``client.stream(...)`` with httpx's and the address guard's errors as FetchError."""

    def __init__(self, inner: Any, url: str) -> None:
        self.inner = inner
        self.url = url

    async def __aenter__(self) -> httpx.Response:
        try:
            response: httpx.Response = await self.inner.__aenter__()
        except AddressRefused as exc:
            raise FetchError(f"{self.url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise TimeoutError from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"{self.url} could not be fetched: {exc}") from exc
        return response

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)


def _check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http and https URLs are fetched, not {scheme or 'this'}")


async def _read_limited(response: httpx.Response, limit: int, url: str) -> bytes:
    announced = response.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise FetchError(
            f"{url} is {int(announced):,} bytes, more than the limit of {limit:,} "
            "([fetch] max_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(
                    f"{url} is more than the limit of {limit:,} bytes ([fetch] max_bytes)"
                )
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise TimeoutError from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: the answer broke off: {exc}") from exc
    return b"".join(chunks)
