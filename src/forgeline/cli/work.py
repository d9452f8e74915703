"""The commands that run agents on a task: ``run``, ``resume``, ``answer``, ``approve``.

Each opens the runtime, records what the person asked for, then has the runtime work on
the task until it needs a person, printing its events as they are recorded and, while
stages work, what each is doing (``cli/live.py``). SIGINT and SIGTERM stop the work in
flight at once (nothing of it is recorded; a second signal exits without waiting), and
the command exits 130: ``forgeline resume`` continues the task.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgeline.cli.edge import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    cli_runtime,
    console,
    errors,
    given,
    run_async,
    sandbox_flags,
)
from forgeline.cli.live import TaskView
from forgeline.cli.options import (
    Broker,
    BudgetTokens,
    BudgetUsd,
    ConfigFile,
    KeepPreview,
    Mode,
    NoCache,
    RequireSandbox,
    Store,
    TaskArg,
    Unsafe,
    Workspace,
)
from forgeline.cli.render import summary
from forgeline.cli.tools import read_issue, record_calls
from forgeline.core.events import task_stream, usage_stream
from forgeline.core.task import TaskState, checked_request, settled
from forgeline.errors import InvalidRequestError
from forgeline.llm.metered import usage_rows
from forgeline.runtime import Runtime
from forgeline.workspace.git import GitWorkspace

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def drive(runtime: Runtime, task_id: str, keep_preview: bool) -> TaskState:
    """Run the task until it needs a person, printing its events and its stages'
    progress. On SIGINT/SIGTERM stop the work in flight at once (nothing of it recorded)
    and exit 130; a second signal exits without waiting for anything."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if interrupted.is_set():  # asked again: leave now (the store's writes are atomic)
            console.show_cursor(True)  # a live display hid it, and will not restore it
            errors.print(f"[yellow]stopped at once[/]; `forgeline resume {task_id}` continues")
            os._exit(EXIT_INTERRUPTED)
        interrupted.set()
        stopping.append(asyncio.create_task(_stop_work(runtime, task_id)))

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    done = asyncio.Event()
    version = await runtime.store.stream_version(task_stream(task_id))
    view = TaskView(console)
    try:
        with view.live():
            printer = asyncio.create_task(
                _print_events(runtime, task_id, max(version - 1, 0), done, view)
            )
            try:
                state = await runtime.run_until_settled(task_id, stop=interrupted)
                if state.terminal and not keep_preview:
                    await runtime.stop_preview(task_id)
            finally:
                for task in stopping:
                    task.cancel()
                done.set()
                await printer
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    if interrupted.is_set() and not settled(state):
        errors.print(
            "[yellow]stopped[/]: the work in flight was dropped (nothing of it is recorded). "
            f"Continue with `forgeline resume {task_id}`."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    return state


async def _stop_work(runtime: Runtime, task_id: str) -> None:
    """Interrupt the task's stage runs, and any that starts while the work winds down."""
    while True:
        await runtime.interrupt(task_id)
        await asyncio.sleep(0.2)


async def _print_events(
    runtime: Runtime, task_id: str, after: int, done: asyncio.Event, view: TaskView
) -> None:
    """Show the task's events after version ``after`` (and its stages' activity from now
    on) until ``done`` is set (and every event recorded before it)."""
    async for event in runtime.follow(
        task_id, after_version=after, until=None, stop=done, activity=True
    ):
        view.show(event)


async def finish(runtime: Runtime, state: TaskState) -> int:
    """Print the task's summary (with its time and tokens) and what to do next; the exit
    code."""
    await show_summary(runtime, state)
    if state.status == "awaiting_approval":
        for paused in state.paused:
            console.print(f"[yellow]paused[/] {escape(paused.reason)}", highlight=False)
        console.print(
            f"Raise the budget with: forgeline approve {state.task_id} --budget-tokens N "
            "(or --budget-usd X); `forgeline usage` shows what was spent"
        )
        return 0
    if state.status == "needs_clarification":
        questions = [
            s.item.description or s.item.title
            for s in state.items.values()
            if s.status == "needs_clarification"
        ]
        console.print(f"[yellow]question[/] {escape(questions[0] if questions else '')}")
        console.print(f'Answer with: forgeline answer {state.task_id} "..."')
        return 0
    if state.deploy is not None and state.deploy.url and state.status == "completed":
        if state.preview_pid is None:
            console.print("preview stopped (use --keep-preview to leave it running)")
        else:
            console.print(
                f"preview running at {state.deploy.url}; `forgeline stop {state.task_id}` stops it"
            )
    return 0 if state.status == "completed" else EXIT_FAILED


async def show_summary(runtime: Runtime, state: TaskState) -> None:
    """The task's summary: branch, worktree, commits, outcome, time and tokens."""
    store = runtime.store
    events = await store.read_stream(task_stream(state.task_id))
    took = (events[-1].created_at - events[0].created_at).total_seconds() if events else None
    rows = usage_rows(state.task_id, await store.read_stream(usage_stream(state.task_id)))
    summary(
        console,
        state,
        await runtime.commits(state),
        runtime.worktree(state).path,
        took_s=took,
        usage=rows[-1] if rows else None,
    )


def _continue(
    task: str,
    workspace: Path,
    store: str | None,
    config: Path | None,
    overrides: dict[str, object],
    *,
    act: Callable[[Runtime, str], Awaitable[None]] | None = None,
    keep_preview: bool = False,
) -> None:
    """``act`` on a recorded task (answer, approve; given the runtime and the task's
    id, ``task`` may be a prefix of it), then run it until it needs a person."""

    async def go() -> int:
        async with cli_runtime(
            workspace, store, config, agents=True, overrides=overrides
        ) as runtime:
            task_id = await runtime.task_id(task)
            if act is not None:
                await act(runtime, task_id)
            state = await runtime.state(task_id)
            if not state.terminal:
                state = await drive(runtime, task_id, keep_preview)
            return await finish(runtime, state)

    raise typer.Exit(run_async(go()))


def run(
    request: Annotated[
        str | None,
        typer.Argument(
            help="What to build, in plain words; `-` reads it from standard input.",
            show_default=False,
        ),
    ] = None,
    request_file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read the request from this file (UTF-8 text; any length).",
            dir_okay=False,
        ),
    ] = None,
    from_issue: Annotated[
        str | None,
        typer.Option(
            "--from-issue",
            help="OWNER/REPO#N: the GitHub issue's title and text are the request; its pull "
            "request will close it.",
        ),
    ] = None,
    workspace: Workspace = Path("."),
    mode: Mode = None,
    max_fix_rounds: Annotated[
        int | None, typer.Option(help="Fixer rounds before the task fails (default 3).")
    ] = None,
    max_review_rounds: Annotated[
        int | None, typer.Option(help="Review rounds before the task fails (default 3).")
    ] = None,
    keep_preview: KeepPreview = False,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    broker: Broker = None,
    config: ConfigFile = None,
) -> None:
    """Build REQUEST: plan, design, code, test (and fix), review and deploy it.

    The request is the argument, a file (--file request.md), standard input (`-`) or a
    GitHub issue (--from-issue)."""
    given_text = request is not None or request_file is not None
    if given_text == (from_issue is not None):
        errors.print(
            "[red]error:[/] give either REQUEST or --from-issue OWNER/REPO#N (REQUEST may be "
            "`-` to read standard input, or come from --file FILE)"
        )
        raise typer.Exit(EXIT_USAGE)
    budget = given(tokens=budget_tokens, usd=budget_usd)
    overrides = given(
        mode=mode,
        broker=broker,
        max_fix_rounds=max_fix_rounds,
        max_review_rounds=max_review_rounds,
        budget=budget or None,
    ) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)
    workspace = workspace.resolve()

    async def go() -> int:
        text = "" if from_issue else checked_request(read_request(request, request_file))
        await GitWorkspace(workspace).check()  # refused before a store is made in it
        async with cli_runtime(
            workspace, store, config, agents=True, overrides=overrides
        ) as runtime:
            issue = None
            if from_issue is not None:
                issue, calls = await read_issue(runtime.settings, from_issue)
            task_id = await runtime.submit(issue.request if issue else text, workspace)
            if issue is not None:
                await record_calls(runtime.store, calls, task_id)
                console.print(f"request from {escape(issue.url)}", highlight=False)
            console.print(f"task [bold]{task_id}[/] on branch forgeline/{task_id}")
            state = await runtime.state(task_id)
            repository = runtime.workspaces.repository(state.repository)
            dirty = await repository.dirty_files()
            if dirty:
                console.print(
                    f"[yellow]note[/]: {len(dirty)} uncommitted change(s) in "
                    f"{escape(str(repository.path))} are not part of the task; it starts "
                    "from the last commit and works in its own worktree",
                    highlight=False,
                )
            state = await drive(runtime, task_id, keep_preview)
            return await finish(runtime, state)

    raise typer.Exit(run_async(go()))


def read_request(argument: str | None, path: Path | None) -> str:
    """The request from the argument, ``-`` (standard input) or ``--file``."""
    if argument is not None and path is not None:
        raise InvalidRequestError("give the request as an argument or with --file, not both")
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidRequestError(
                f"cannot read the request file {path}: {exc.strerror}"
            ) from None
        return _text(data, str(path))
    if argument == "-":
        return _text(sys.stdin.buffer.read(), "standard input")
    if argument is None:
        raise InvalidRequestError(
            'say what to build: forgeline run "..." (or --file request.md, or - to read '
            "standard input)"
        )
    return argument


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"the request in {where} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None


def resume(
    task: TaskArg,
    workspace: Workspace = Path("."),
    mode: Mode = None,
    keep_preview: Annotated[bool, typer.Option(help="Leave a web preview running.")] = False,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Continue a task that was stopped or killed; finished stages are not re-run."""
    overrides = given(mode=mode) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, overrides, keep_preview=keep_preview)


def answer(
    task: TaskArg,
    text: Annotated[str, typer.Argument(help="Your answer to the task's question.")],
    workspace: Workspace = Path("."),
    mode: Mode = None,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Answer a task's clarification question, then continue the task."""

    async def act(runtime: Runtime, task_id: str) -> None:
        await runtime.answer(task_id, text)

    overrides = given(mode=mode) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, overrides, act=act)


def approve(
    task: TaskArg,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    workspace: Workspace = Path("."),
    mode: Mode = None,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Raise the budget of a task paused by it, then continue the task.

    Limits not given stay as they were; both are totals for the whole task."""
    if budget_tokens is None and budget_usd is None:
        errors.print("[red]error:[/] give --budget-tokens and/or --budget-usd")
        raise typer.Exit(EXIT_USAGE)

    async def act(runtime: Runtime, task_id: str) -> None:
        state = await runtime.state(task_id)
        raised = given(tokens=budget_tokens, usd=budget_usd)  # the rest stays as it was
        await runtime.approve(task_id, state.budget.model_copy(update=raised))

    overrides = given(mode=mode) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, overrides, act=act)
