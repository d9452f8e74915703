"""The commands that read a store: ``tasks``, ``status``, ``events``, ``usage``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from forgeline.cli.edge import cli_runtime, console, run_async
from forgeline.cli.live import TaskView
from forgeline.cli.options import ConfigFile, Store, TaskArg, Workspace
from forgeline.cli.render import tasks_table, usage_table
from forgeline.cli.work import show_summary
from forgeline.core.events import activity_stream, task_stream, usage_stream
from forgeline.core.task import TaskState
from forgeline.llm.metered import usage_rows
from forgeline.runtime import Runtime
from forgeline.store.base import TaskRow


def tasks(
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Only failed tasks and tasks with work in the dead-letter queue, with the "
            "last error.",
        ),
    ] = False,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """List the tasks in this workspace's store."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            rows = await runtime.store.tasks()
            if failed:
                console.print(await _failures(runtime, rows))
                return
        if rows:
            console.print(tasks_table(rows))
        else:
            console.print('no tasks yet: forgeline run "what to build"')

    run_async(go())


async def _failures(runtime: Runtime, rows: list[TaskRow]) -> Table:
    """Failed tasks with their reason, and work parked in the dead-letter queue (distributed
    mode) with the last error; ``forgeline retry`` queues the latter again."""
    from forgeline.transport.deadletters import dead_letters

    table = Table("task", "status", "failed in", "last error")
    for row in rows:
        if row.status == "failed":
            state = await runtime.state(row.id)
            table.add_row(row.id, row.status, row.current_phase, escape(state.failure or ""))
    for letter in await dead_letters(runtime.store):
        where = f"{letter.role} on {letter.event_type} (dead letter, {letter.attempts} tries)"
        table.add_row(letter.task_id, "dead-lettered", escape(where), escape(letter.error))
    return table


def status(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Show where a task stands: phase, branch, commits, tests, review, deploy, time, tokens."""

    async def go() -> int:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            task_id = await runtime.task_id(task)
            state = await runtime.state(task_id)
            row = await runtime.store.task(task_id)
            if row is not None:
                console.print(f"phase    {row.current_phase}")
            await show_summary(runtime, state)
            return 0

    raise typer.Exit(run_async(go()))


def events(
    task: TaskArg,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new events, and what running stages are doing, until the "
            "task ends.",
        ),
    ] = False,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Print a task's events (the audit log) and its stages' log lines, optionally
    following new ones."""

    def now(state: TaskState) -> bool:
        return True

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            task_id = await runtime.task_id(task)
            await runtime.state(task_id)  # a clear error for an unreadable task
            view = TaskView(console, progress=False)  # what is past: no progress lines
            seen = {task_stream(task_id): 0, activity_stream(task_id): 0}
            async for event in runtime.follow(task_id, until=now, activity=True):
                view.show(event)
                seen[event.stream_id] = event.version
            if not follow:
                return
            view.progress = True
            with view.live():
                async for event in runtime.follow(
                    task_id,
                    after_version=seen[task_stream(task_id)],
                    activity=True,
                    activity_after=seen[activity_stream(task_id)],
                ):
                    view.show(event)

    with contextlib.suppress(KeyboardInterrupt):
        run_async(go())


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
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            if task is not None:
                ids = [await runtime.task_id(task)]
            else:
                ids = [row.id for row in await runtime.store.tasks()]
            rows = []
            for task_id in ids:
                recorded = await runtime.store.read_stream(usage_stream(task_id))
                rows += usage_rows(task_id, recorded)
        if rows:
            console.print(usage_table(rows, "model usage (cached calls cost nothing)"))
        else:
            console.print("no model calls recorded yet")

    run_async(go())
