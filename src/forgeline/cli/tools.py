"""The tools from the command line: ``search``, ``fetch``, ``research``, ``report``, ``pr``,
``issue`` and ``notify``. A thin edge over ``forgeline.tools``: each command records its
``tool.*`` events, in the task's stream for a task's command, else in ``tools-cli``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgeline.cli.edge import cli_runtime, console, run_async
from forgeline.cli.options import ConfigFile, Store, TaskArg, Workspace
from forgeline.config import Settings
from forgeline.core.events import ToolSearched, task_stream, utcnow
from forgeline.errors import ForgelineError
from forgeline.store.base import EventStore
from forgeline.tools.calls import CLI_STREAM, ToolCalls
from forgeline.tools.fetch import Fetcher
from forgeline.tools.github import GitHub, Issue, IssueRef, issue_of
from forgeline.tools.mail import Mailer, outcome_of
from forgeline.tools.report.html import render_html
from forgeline.tools.report.model import load_report
from forgeline.tools.report.pdf import render_pdf
from forgeline.tools.research import Research
from forgeline.tools.search import WebSearch, format_hits
from forgeline.workspace.layout import Workspaces

__all__ = ["read_issue", "record_calls", "register"]


@contextlib.asynccontextmanager
async def _opened(
    workspace: Path, store: str | None, config: Path | None
) -> AsyncIterator[tuple[Settings, EventStore, Workspaces]]:
    """The settings, the store and the repositories of ``--workspace``, through the
    runtime (no models, no sandbox: the tools run nothing untrusted)."""
    async with cli_runtime(workspace, store, config, agents=False, create=True) as runtime:
        yield runtime.settings, runtime.store, runtime.workspaces


async def record_calls(
    store: EventStore, calls: ToolCalls, task_id: str | None, actor: str = "user"
) -> None:
    """A person's tool calls as events: in the task's stream, or in ``tools-cli``."""
    if not calls.records:
        return
    stream = task_stream(task_id) if task_id else CLI_STREAM
    events = calls.events(
        stream_id=stream,
        correlation_id=task_id or CLI_STREAM,
        causation_id=None,
        actor=actor,
        created_at=utcnow(),
    )
    await store.append(stream, events)


async def read_issue(settings: Settings, ref: str) -> tuple[Issue, ToolCalls]:
    """The issue ``OWNER/REPO#N`` (``forgeline run --from-issue``), with the call's record
    for the task's stream (``record_calls``), which links the task to the issue."""
    calls = ToolCalls()
    return await GitHub(settings.github, recorder=calls).read_issue(IssueRef.parse(ref)), calls


def search(
    query: Annotated[str | None, typer.Argument(help="What to search for.")] = None,
    max_results: Annotated[
        int | None, typer.Option("--max", "-n", min=1, max=50, help="How many results.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="duckduckgo or searxng (default: the search settings).")
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="List the searches made from the command line.")
    ] = False,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Search the web (DuckDuckGo or SearXNG), cached and rate-limited."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, _workspaces):
            if history or query is None:
                for event in await events.read_stream(CLI_STREAM):
                    if isinstance(event.data, ToolSearched):
                        d = event.data
                        status = d.error or f"{len(d.hits)} result(s)" + (
                            " cached" if d.cached else ""
                        )
                        console.print(
                            f"{event.created_at:%Y-%m-%d %H:%M} {escape(d.provider)} "
                            f"{escape(repr(d.query))}: {escape(status)}",
                            highlight=False,
                        )
                return
            search_config = settings.search
            if provider is not None:
                search_config = search_config.model_validate(
                    {**search_config.model_dump(), "provider": provider}
                )
            calls = ToolCalls()
            try:
                hits = await WebSearch(search_config, events, recorder=calls).search(
                    query, max_results
                )
            finally:
                await record_calls(events, calls, None)
            console.print(escape(format_hits(hits)), end="", highlight=False)

    run_async(go())


def fetch(
    url: Annotated[str, typer.Argument(help="The page to fetch.")],
    max_chars: Annotated[int | None, typer.Option(help="Characters of text to print.")] = None,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Fetch a page (limits, robots.txt, no private addresses) and print its main text."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, _workspaces):
            calls = ToolCalls()
            try:
                page = await Fetcher(settings.fetch, recorder=calls).fetch(url)
            finally:
                await record_calls(events, calls, None)
            text = page.for_model(max_chars or settings.fetch.max_chars)
            console.print(escape(text), end="", highlight=False)

    run_async(go())


def research(
    topic: Annotated[str, typer.Argument(help="What to research; names the note.")],
    query: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="Search for this (repeatable).")
    ] = None,
    sources: Annotated[int, typer.Option(min=1, max=10, help="Pages to read.")] = 3,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Search, read the best pages and write research/<topic>.md with numbered references."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, _workspaces):
            calls = ToolCalls()
            tool = Research(
                WebSearch(settings.search, events, recorder=calls),
                Fetcher(settings.fetch, recorder=calls),
                recorder=calls,
            )
            try:
                note = await tool.run(workspace.resolve(), topic, queries=query, sources=sources)
            finally:
                await record_calls(events, calls, None)
            console.print(f"wrote {escape(note.path)} ({len(note.pages)} source(s))")

    run_async(go())


def report(
    task: TaskArg,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write the PDF report here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML page here.")] = None,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """A task's report: request, plan, changes, tests, review, deploy, usage, a chart.
    Without --pdf or --html: forgeline-TASK.pdf here."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (_, events, workspaces):
            loaded = await load_report(events, task, workspaces)
        if pdf is None and html is None:
            _write(Path(f"forgeline-{task}.pdf"), render_pdf(loaded))
        if pdf is not None:
            _write(pdf, render_pdf(loaded))
        if html is not None:
            _write(html, render_html(loaded).encode())

    run_async(go())


def _write(path: Path, content: bytes) -> None:
    try:
        path.write_bytes(content)
    except OSError as exc:
        raise ForgelineError(f"cannot write {path}: {exc.strerror or exc}") from exc
    console.print(f"wrote {escape(str(path))}")


def pr(
    task: TaskArg,
    issue: Annotated[
        str | None,
        typer.Option(
            help="OWNER/REPO#N: link the pull request to this issue (default: the issue "
            "the task came from, `run --from-issue`)."
        ),
    ] = None,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Push a task's branch and open its pull request on GitHub (github settings)."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, workspaces):
            loaded = await load_report(events, task, workspaces)
            calls = ToolCalls()
            ref = (
                IssueRef.parse(issue)
                if issue
                else issue_of(await events.read_stream(task_stream(task)))
            )
            try:
                opened = await GitHub(settings.github, recorder=calls).deliver(loaded, issue=ref)
            finally:
                await record_calls(events, calls, task)
        console.print(f"pull request #{opened.number}: {escape(opened.url)}")

    run_async(go())


def issue(
    ref: Annotated[str, typer.Argument(help="OWNER/REPO#N")],
    comment: Annotated[str | None, typer.Option(help="Comment on the issue.")] = None,
    close: Annotated[bool, typer.Option("--close", help="Close the issue (as completed).")] = False,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Print a GitHub issue as a request; optionally comment on it or close it."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, _workspaces):
            calls = ToolCalls()
            tool = GitHub(settings.github, recorder=calls)
            target = IssueRef.parse(ref)
            try:
                if close:
                    await tool.close_issue(target, comment)
                elif comment:
                    await tool.comment(target, comment)
                else:
                    found = await tool.read_issue(target)
                    console.print(escape(found.request), highlight=False)
            finally:
                await record_calls(events, calls, None)
        if close or comment:
            console.print(f"{'closed' if close else 'commented on'} {escape(ref)}")

    run_async(go())


def notify(
    task: TaskArg,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """E-mail a task's outcome to the addresses the email.notify settings list for it."""

    async def go() -> None:
        async with _opened(workspace, store, config) as (settings, events, workspaces):
            loaded = await load_report(events, task, workspaces)
            calls = ToolCalls()
            try:
                sent = await Mailer(settings.email, recorder=calls).notify(loaded)
            finally:
                await record_calls(events, calls, task)
        if sent is None:
            outcome = outcome_of(loaded.state) or loaded.state.status
            console.print(
                f"nobody to tell: no \\[email] host, or no address for {outcome}",
                highlight=False,
            )
        else:
            console.print(f"sent {escape(str(sent['Subject']))} to {escape(str(sent['To']))}")

    run_async(go())


def register(app: typer.Typer) -> None:
    """Add the tool commands to the ``forgeline`` app."""
    for command in (search, fetch, research, report, pr, issue, notify):
        app.command()(command)
