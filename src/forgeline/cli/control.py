"""The commands that stop things: ``cancel`` a task, ``stop`` its web preview."""

from __future__ import annotations

from pathlib import Path

from forgeline.cli.edge import cli_runtime, console, run_async
from forgeline.cli.options import ConfigFile, Store, TaskArg, Workspace


def cancel(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Cancel a task: its stages stop (the process running it stops their model calls
    and test runs at once), nothing more is recorded for it, and its preview stops."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            task_id = await runtime.task_id(task)
            await runtime.cancel(task_id)
        console.print(f"task {task_id} cancelled")

    run_async(go())


def stop(
    task: TaskArg, workspace: Workspace = Path("."), store: Store = None, config: ConfigFile = None
) -> None:
    """Stop a task's running web preview."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            pid = await runtime.stop_preview(await runtime.task_id(task))
        console.print(f"preview (pid {pid}) stopped" if pid else "no preview is running")

    run_async(go())
