"""Research notes: search, fetch the best pages, and write ``research/<topic>.md`` in the
workspace with numbered references.

``Research.run`` searches the topic (or the given queries), fetches up to ``sources``
pages from the hits (``gather``: a page that cannot or may not be fetched is skipped, its
refusal recorded by the fetch tool), and writes the note (``write``). A research plan
step (``executors/patterns/research.py``) gathers and makes the ``note`` the same way and
lands it through the patch engine. The note's excerpts carry the number
of their reference (``[1]``); ``ResearchNote.summary`` is the text a coder's prompt gets.
A planner step that asks a model to summarise can pass its summary in: the references
stay the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_ai.toolsets import AbstractToolset, CombinedToolset, FunctionToolset

from forgeline.core.events import ResearchWritten, SearchHit
from forgeline.errors import ForgelineError
from forgeline.observability.tracing import traced
from forgeline.tools.calls import Recorder, ignore
from forgeline.tools.fetch import FetchedPage, Fetcher, FetchError
from forgeline.tools.search import SearchError, WebSearch
from forgeline.workspace.git import confined_path

__all__ = ["Research", "ResearchError", "ResearchNote", "render_note", "topic_slug"]

EXCERPT_CHARS = 1_500


class ResearchError(ForgelineError):
    """Nothing could be found or fetched for a topic."""


def topic_slug(topic: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:60].rstrip("-")
    if not slug:
        raise ResearchError(f"the topic {topic!r} has no letters or digits to name a file by")
    return slug


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind("\n\n"), cut.rfind(". "))
    return (cut[: end + 1] if end > limit // 2 else cut).rstrip() + " …"


@dataclass(frozen=True)
class ResearchNote:
    topic: str
    path: str
    """Relative to the workspace: ``research/<slug>.md``."""
    pages: tuple[FetchedPage, ...]
    markdown: str

    @property
    def summary(self) -> str:
        """The note without its title: excerpts with reference numbers, then references."""
        return self.markdown.split("\n", 2)[2].strip()


def render_note(topic: str, pages: list[FetchedPage], summary: str | None = None) -> str:
    """The note as Markdown: an optional summary, one excerpt per source, references."""
    lines = [f"# {topic}", ""]
    if summary:
        lines += [summary.strip(), ""]
    lines += ["## Sources", ""]
    for number, page in enumerate(pages, 1):
        title = page.citation.title or page.citation.url
        lines += [f"### [{number}] {title}", "", _excerpt(page.text), ""]
    lines += ["## References", ""]
    lines += [f"{n}. {page.citation.reference()}" for n, page in enumerate(pages, 1)]
    return "\n".join(lines) + "\n"


class Research:
    """The research tool over the search and fetch tools."""

    def __init__(self, search: WebSearch, fetcher: Fetcher, recorder: Recorder = ignore) -> None:
        self.search = search
        self.fetcher = fetcher
        self.recorder = recorder

    async def run(
        self,
        workspace: Path,
        topic: str,
        *,
        queries: list[str] | None = None,
        sources: int = 3,
        summary: str | None = None,
    ) -> ResearchNote:
        """Search, fetch and write ``research/<topic>.md`` in ``workspace``."""
        pages = await self.gather(topic, queries=queries, sources=sources)
        return self.write(workspace, topic, pages, summary)

    @traced("research")
    async def gather(
        self, topic: str, *, queries: list[str] | None = None, sources: int = 3
    ) -> list[FetchedPage]:
        """Search the topic (or ``queries``) and fetch up to ``sources`` of the hits; a
        ``ResearchError`` when none could be read."""
        hits: list[SearchHit] = []
        errors: list[str] = []
        for query in queries or [topic]:
            try:
                hits += await self.search.search(query)
            except SearchError as exc:
                errors.append(str(exc))
        pages: list[FetchedPage] = []
        seen: set[str] = set()
        for hit in hits:
            if len(pages) >= sources:
                break
            if hit.url in seen:
                continue
            seen.add(hit.url)
            try:
                pages.append(await self.fetcher.fetch(hit.url))
            except FetchError as exc:
                errors.append(str(exc))
        if not pages:
            why = "; ".join(errors[-3:]) or "the search found nothing"
            raise ResearchError(f"no source could be read for {topic!r}: {why}")
        return pages

    def toolset(self, workspace: Path) -> AbstractToolset[Any]:
        """A pydantic-ai toolset for a research step: ``web_search``, ``fetch_page`` and
        ``write_research_note``, which cites the pages fetched through it by number."""
        fetched: dict[str, FetchedPage] = {}
        max_chars = self.fetcher.config.max_chars

        async def fetch_page(url: str) -> str:
            """Fetch a web page and get its main text, title and URL, to cite later.

            Args:
                url: The page's full http(s) URL, e.g. one a web search returned.
            """
            try:
                page = await self.fetcher.fetch(url)
            except FetchError as exc:
                return f"error: {exc}\n"
            fetched[url] = page
            return page.for_model(max_chars)

        def write_research_note(topic: str, summary: str, urls: list[str]) -> str:
            """Write the research note research/<topic>.md with numbered references.

            Args:
                topic: What was researched; names the file.
                summary: What you found, citing sources as [1], [2] in the order of urls.
                urls: The fetched pages the summary cites, in order.
            """
            missing = [url for url in urls if url not in fetched]
            if missing or not urls:
                return (
                    f"error: fetch these pages first with fetch_page: {missing or 'none given'}\n"
                )
            try:
                note = self.write(workspace, topic, [fetched[url] for url in urls], summary)
            except ForgelineError as exc:
                return f"error: {exc}\n"
            return f"wrote {note.path} with {len(urls)} reference(s)\n"

        tools = FunctionToolset([fetch_page, write_research_note])
        return CombinedToolset([self.search.toolset(), tools])

    def note(
        self, topic: str, pages: list[FetchedPage], summary: str | None = None
    ) -> ResearchNote:
        """The note on ``pages``, recorded as a ``tool.research`` event; the caller writes
        it (``write``, or a research step through the patch engine)."""
        relative = f"research/{topic_slug(topic)}.md"
        markdown = render_note(topic, pages, summary)
        self.recorder(
            ResearchWritten(
                topic=topic,
                path=relative,
                references=tuple(page.citation.url for page in pages),
            )
        )
        return ResearchNote(topic, relative, tuple(pages), markdown)

    def write(
        self, workspace: Path, topic: str, pages: list[FetchedPage], summary: str | None = None
    ) -> ResearchNote:
        path = confined_path(workspace, f"research/{topic_slug(topic)}.md")
        note = self.note(topic, pages, summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(note.markdown, encoding="utf-8")
        return note
