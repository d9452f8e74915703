"""``forgeline``: the command line. A thin edge: parse, wire, call the pipeline, print."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from forgeline.cli.doctor import doctor
from forgeline.cli.render import print_event, summary, tasks_table, usage_table
from forgeline.config import Settings, load_settings
from forgeline.core.events import task_stream, usage_stream
from forgeline.core.task import TaskState
from forgeline.errors import ForgelineError
from forgeline.llm.gateway import ModelRegistry
from forgeline.llm.metered import usage_rows
from forgeline.pipeline.base import Services
from forgeline.pipeline.runner import Pipeline, settled
from forgeline.pipeline.workers import WorkerManager
from forgeline.redaction import redact
from forgeline.sandbox.select import UnsafeSpawnerWarning, choose_spawner
from forgeline.sandbox.spawner import LocalSpawner, ProcessSpawner
from forgeline.store import open_store
from forgeline.store.base import EventStore
from forgeline.workspace.git import GitWorkspace

T = TypeVar("T")

app = typer.Typer(
    name="forgeline",
    help="A software factory run by AI agents: plan, design, code, test, review, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

Workspace = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="The git repository to work in (created if absent).",
        envvar="FORGELINE_WORKSPACE",
    ),
]
Store = Annotated[
    str | None,
    typer.Option(
        "--store", help="Event store URL (default: sqlite file under <workspace>/.forgeline/)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: <workspace>/forgeline.toml)."),
]
Mode = Annotated[
    Literal["event", "sequential"] | None,
    typer.Option(
        "--mode", help="event: a worker per stage fed by the store; sequential: direct calls."
    ),
]
TaskArg = Annotated[str, typer.Argument(help="The task id (see `forgeline tasks`).")]
Unsafe = Annotated[
    bool,
    typer.Option(
        "--unsafe-no-sandbox",
        help="Run tests, smoke runs and previews WITHOUT isolation when bubblewrap is missing.",
    ),
]
RequireSandbox = Annotated[
    bool,
    typer.Option(
        "--require-sandbox", help="Refuse to run untrusted code without the sandbox, always."
    ),
]

NoCache = Annotated[
    bool,
    typer.Option("--no-cache", help="Call the models even when the response cache has an answer."),
]
BudgetTokens = Annotated[
    int | None,
    typer.Option(
        "--budget-tokens", min=0, help="Hard cap on the task's model tokens (pauses when hit)."
    ),
]
BudgetUsd = Annotated[
    float | None,
    typer.Option("--budget-usd", min=0, help="Hard cap on the task's model cost in US dollars."),
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main() -> None:
    app()


def _run(coro: Coroutine[object, object, T]) -> T:
    try:
        return asyncio.run(coro)
    except ForgelineError as exc:
        errors.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def _sandbox_flags(unsafe: bool, require: bool) -> dict[str, bool | None]:
    """Flags given on the command line override the settings; absent ones do not."""
    return {"unsafe_no_sandbox": unsafe or None, "require_sandbox": require or None}


def _given(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


def _flags(unsafe: bool, require: bool, no_cache: bool) -> dict[str, bool | None]:
    return {**_sandbox_flags(unsafe, require), "cache": False if no_cache else None}


@contextlib.asynccontextmanager
async def _pipeline(
    workspace: Path,
    store: str | None,
    config: Path | None,
    *,
    with_models: bool,
    **overrides: object,
) -> AsyncIterator[Pipeline]:
    workspace = workspace.resolve()
    settings = load_settings(workspace, config, store=store, **overrides)
    models = ModelRegistry.from_settings(settings) if with_models else ModelRegistry({})
    # Only commands that run agents need the spawner for untrusted code.
    spawner = _spawner(settings) if with_models else LocalSpawner()
    event_store = open_store(settings.store_url(workspace))
    await event_store.open()
    services = Services(store=event_store, settings=settings, spawner=spawner, models=models)
    try:
        yield Pipeline(services)
    finally:
        await models.aclose()
        await event_store.close()


def _spawner(settings: Settings) -> ProcessSpawner:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsafeSpawnerWarning)
        spawner = choose_spawner(
            require_sandbox=settings.require_sandbox, allow_unsafe=settings.unsafe_no_sandbox
        )
    for warning in caught:
        errors.print(f"[bold red]WARNING:[/] {escape(str(warning.message))}", highlight=False)
    return spawner


# ------------------------------------------------------------------------ work


async def _print_events(
    store: EventStore, task_id: str, after: int, done: Callable[[], Awaitable[bool]]
) -> None:
    """Print the task's events after version ``after`` as they are recorded, until
    ``done()`` (asked after each catch-up, so nothing recorded before it is missed)."""
    stream = task_stream(task_id)
    seen = after
    while True:
        mark = store.commit_count  # taken before reading: no append slips between the two
        for event in await store.read_stream(stream, after_version=seen):
            print_event(console, event)
            seen = event.version
        if await done():
            return
        await store.wait_for_append(mark)


async def _commits(state: TaskState) -> list[tuple[str, str]]:
    """The task branch's commits, oldest first (none if the worktree is gone)."""
    try:
        return await GitWorkspace(Path(state.workspace)).log(state.base_commit, state.head)
    except ForgelineError:
        return []


async def _drive(pipeline: Pipeline, task_id: str, keep_preview: bool) -> TaskState:
    """Run the task until it needs a person, printing progress; drain on SIGINT/SIGTERM."""
    store = pipeline.store
    settings: Settings = pipeline.services.settings
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    printed = asyncio.Event()

    async def finished() -> bool:
        return printed.is_set()

    start_version = await store.stream_version(task_stream(task_id))
    printer = asyncio.create_task(
        _print_events(store, task_id, max(start_version - 1, 0), finished)
    )
    try:
        await pipeline.recover(task_id)
        if settings.mode == "sequential":
            await pipeline.run_sequential(task_id, stop=interrupted)
        else:
            async with WorkerManager(pipeline, task_id=task_id) as manager:
                while not interrupted.is_set():
                    if settled(await pipeline.state(task_id)):
                        break
                    failure = manager.failure()
                    if failure is not None:
                        raise failure
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(interrupted.wait(), 0.2)
        state = await pipeline.state(task_id)
        if state.terminal and not keep_preview:
            await pipeline.stop_preview(task_id)
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


async def _finish(state: TaskState) -> int:
    summary(console, state, await _commits(state))
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
    mode: Literal["event", "sequential"] | None,
    flags: dict[str, bool | None],
    *,
    act: Callable[[Pipeline], Awaitable[None]] | None = None,
    keep_preview: bool = False,
) -> None:
    """``act`` on a recorded task (answer, approve), then run it until it needs a person."""

    async def go() -> int:
        async with _pipeline(
            workspace, store, config, with_models=True, mode=mode, **flags
        ) as pipeline:
            if act is not None:
                await act(pipeline)
            state = await pipeline.state(task)
            if not state.terminal:
                state = await _drive(pipeline, task, keep_preview)
            return await _finish(state)

    raise typer.Exit(_run(go()))


# --------------------------------------------------------------------- commands


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="What to build, in plain words.")],
    workspace: Workspace = Path("."),
    mode: Mode = None,
    max_fix_rounds: Annotated[
        int | None, typer.Option(help="Fixer rounds before the task fails (default 3).")
    ] = None,
    max_review_rounds: Annotated[
        int | None, typer.Option(help="Review rounds before the task fails (default 3).")
    ] = None,
    keep_preview: Annotated[
        bool, typer.Option(help="Leave a web preview running after the task ends.")
    ] = False,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Build REQUEST: plan, design, code, test (and fix), review and deploy it."""
    budget = _given(tokens=budget_tokens, usd=budget_usd)

    async def go() -> int:
        async with _pipeline(
            workspace,
            store,
            config,
            with_models=True,
            mode=mode,
            max_fix_rounds=max_fix_rounds,
            max_review_rounds=max_review_rounds,
            budget=budget or None,
            cache=False if no_cache else None,
            **_sandbox_flags(unsafe_no_sandbox, require_sandbox),
        ) as pipeline:
            repository = GitWorkspace(workspace)
            task_id = await pipeline.submit(request, repository)
            console.print(f"task [bold]{task_id}[/] on branch forgeline/{task_id}")
            dirty = await repository.dirty_files()
            if dirty:
                console.print(
                    f"[yellow]note[/]: {len(dirty)} uncommitted change(s) in "
                    f"{escape(str(repository.path))} are not part of the task; it starts "
                    "from the last commit and works in its own worktree",
                    highlight=False,
                )
            state = await _drive(pipeline, task_id, keep_preview)
            return await _finish(state)

    raise typer.Exit(_run(go()))


@app.command()
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
    flags = _flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, mode, flags, keep_preview=keep_preview)


@app.command()
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

    async def act(pipeline: Pipeline) -> None:
        await pipeline.answer(task, text)

    flags = _flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, mode, flags, act=act)


@app.command()
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

    async def act(pipeline: Pipeline) -> None:
        state = await pipeline.state(task)
        budget = state.budget.model_copy(update=_given(tokens=budget_tokens, usd=budget_usd))
        await pipeline.approve(task, budget)

    flags = _flags(unsafe_no_sandbox, require_sandbox, no_cache)
    _continue(task, workspace, store, config, mode, flags, act=act)


@app.command()
def usage(
    task: Annotated[
        str | None, typer.Argument(help="A task id; all tasks in the store when left out.")
    ] = None,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Model usage and cost per task, per role and per model (from llm.usage events)."""

    async def go() -> None:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            if task is not None:
                await pipeline.state(task)  # a clear error for an unknown id
                ids = [task]
            else:
                ids = [row.id for row in await pipeline.store.tasks()]
            rows = []
            for task_id in ids:
                rows += usage_rows(task_id, await pipeline.store.read_stream(usage_stream(task_id)))
        if rows:
            console.print(usage_table(rows, "model usage (cached calls cost nothing)"))
        else:
            console.print("no model calls recorded yet")

    _run(go())


@app.command()
def tasks(workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None) -> None:
    """List the tasks in this workspace's store."""

    async def go() -> None:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            rows = await pipeline.store.tasks()
        if rows:
            console.print(tasks_table(rows))
        else:
            console.print('no tasks yet: forgeline run "what to build"')

    _run(go())


@app.command()
def status(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Show where a task stands: phase, branch, commits, tests, review, deploy."""

    async def go() -> int:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            state = await pipeline.state(task)
            row = await pipeline.store.task(task)
            if row is not None:
                console.print(f"phase    {row.current_phase}")
            summary(console, state, await _commits(state))
            return 0

    raise typer.Exit(_run(go()))


@app.command()
def events(
    task: TaskArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until the task ends.")
    ] = False,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Print a task's events (the audit log), optionally following new ones."""

    async def go() -> None:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            await pipeline.state(task)  # a clear error for an unknown id

            async def done() -> bool:
                return not follow or settled(await pipeline.state(task))

            await _print_events(pipeline.store, task, 0, done)

    with contextlib.suppress(KeyboardInterrupt):
        _run(go())


@app.command()
def cancel(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Cancel a task: no stage acts on it afterwards, and its preview stops."""

    async def go() -> None:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            await pipeline.cancel(task)
        console.print(f"task {task} cancelled")

    _run(go())


@app.command()
def stop(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Stop a task's running web preview."""

    async def go() -> None:
        async with _pipeline(workspace, store, config, with_models=False) as pipeline:
            await pipeline.state(task)
            pid = await pipeline.stop_preview(task)
        console.print(f"preview (pid {pid}) stopped" if pid else "no preview is running")

    _run(go())


app.command()(doctor)
