"""The commands that run agents on a task: ``run``, ``resume``, ``answer``, ``approve``.

Each opens the runtime, records what the person asked for, then has the runtime work on
the task until it needs a person, printing its events as they are recorded. SIGINT and
SIGTERM stop it: the work in flight is finished and recorded, and the command exits 130.
"""

from __future__ import annotations

import asyncio
import signal
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
from forgeline.cli.render import print_event, summary
from forgeline.cli.tools import read_issue, record_calls
from forgeline.core.events import Event, task_stream
from forgeline.core.task import TaskState, settled
from forgeline.runtime import Runtime


async def drive(runtime: Runtime, task_id: str, keep_preview: bool) -> TaskState:
    """Run the task until it needs a person, printing its events; stop on SIGINT/SIGTERM
    (the work in flight finished and recorded), then exit 130."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    printed = asyncio.Event()
    version = await runtime.store.stream_version(task_stream(task_id))
    printer = asyncio.create_task(_print_events(runtime, task_id, max(version - 1, 0), printed))
    try:
        state = await runtime.run_until_settled(task_id, stop=interrupted)
        if state.terminal and not keep_preview:
            await runtime.stop_preview(task_id)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        printed.set()
        await printer
    if interrupted.is_set() and not settled(state):
        errors.print(
            f"[yellow]stopped[/]: work in flight was finished and recorded. "
            f"Continue with `forgeline resume {task_id}`."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    return state


async def _print_events(runtime: Runtime, task_id: str, after: int, done: asyncio.Event) -> None:
    """Print the task's events after version ``after`` until ``done`` is set (and every
    event recorded before it)."""
    event: Event
    async for event in runtime.follow(task_id, after_version=after, until=None, stop=done):
        print_event(console, event)


async def finish(runtime: Runtime, state: TaskState) -> int:
    """Print the task's summary and what to do next; the exit code."""
    summary(console, state, await runtime.commits(state), runtime.worktree(state).path)
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


def _continue(
    task: str,
    workspace: Path,
    store: str | None,
    config: Path | None,
    overrides: dict[str, object],
    *,
    act: Callable[[Runtime], Awaitable[None]] | None = None,
    keep_preview: bool = False,
) -> None:
    """``act`` on a recorded task (answer, approve), then run it until it needs a person."""

    async def go() -> int:
        async with cli_runtime(
            workspace, store, config, agents=True, overrides=overrides
        ) as runtime:
            if act is not None:
                await act(runtime)
            state = await runtime.state(task)
            if not state.terminal:
                state = await drive(runtime, task, keep_preview)
            return await finish(runtime, state)

    raise typer.Exit(run_async(go()))


def run(
    request: Annotated[str | None, typer.Argument(help="What to build, in plain words.")] = None,
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
    """Build REQUEST: plan, design, code, test (and fix), review and deploy it."""
    if (request is None) == (from_issue is None):
        errors.print("[red]error:[/] give either REQUEST or --from-issue OWNER/REPO#N")
        raise typer.Exit(EXIT_USAGE)
    budget = given(tokens=budget_tokens, usd=budget_usd)
    overrides = given(
        mode=mode,
        broker=broker,
        max_fix_rounds=max_fix_rounds,
        max_review_rounds=max_review_rounds,
        budget=budget or None,
    ) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)

    async def go() -> int:
        async with cli_runtime(
            workspace, store, config, agents=True, overrides=overrides
        ) as runtime:
            issue = None
            if from_issue is not None:
                issue, calls = await read_issue(runtime.settings, from_issue)
            task_id = await runtime.submit(issue.request if issue else request or "", workspace)
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

    async def act(runtime: Runtime) -> None:
        await runtime.answer(task, text)

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

    async def act(runtime: Runtime) -> None:
        state = await runtime.state(task)
        raised = given(tokens=budget_tokens, usd=budget_usd)  # the rest stays as it was
        await runtime.approve(task, state.budget.model_copy(update=raised))

    overrides = given(mode=mode) | sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, overrides, act=act)
