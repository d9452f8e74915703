"""What every command shares: the consoles, the exit codes, turning errors into messages,
and opening the runtime for a ``--workspace`` (its settings, store and workspaces root)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from forgeline.config import Settings, load_settings
from forgeline.errors import ForgelineError
from forgeline.pipeline.execution import Sequential
from forgeline.redaction import redact
from forgeline.runtime import Runtime, open_runtime

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_async(coro: Coroutine[object, object, T]) -> T:
    """Run a command's coroutine; a ``ForgelineError`` becomes its message and exit 2."""
    try:
        return asyncio.run(coro)
    except ForgelineError as exc:
        errors.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def given(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


def sandbox_flags(unsafe: bool, require: bool, no_cache: bool = False) -> dict[str, object]:
    """Flags given on the command line override the settings; absent ones do not."""
    return given(
        unsafe_no_sandbox=unsafe or None,
        require_sandbox=require or None,
        cache=False if no_cache else None,
    )


def cli_settings(
    workspace: Path, store: str | None, config: Path | None, **overrides: object
) -> Settings:
    """The settings for ``--workspace``: its store by default, and the directory holding
    it as the workspaces root unless one is configured."""
    workspace = workspace.resolve()
    settings = load_settings(workspace, config, store=store, **overrides)
    return settings.model_copy(
        update={
            "store": settings.store_url(workspace),
            "workspaces_root": settings.workspaces_root or workspace.parent,
        }
    )


def warn(message: str) -> None:
    errors.print(f"[bold red]WARNING:[/] {escape(message)}", highlight=False)


@asynccontextmanager
async def cli_runtime(
    workspace: Path,
    store: str | None,
    config: Path | None,
    *,
    agents: bool,
    overrides: Mapping[str, object] | None = None,
    keep_previews: bool = True,
    create: bool | None = None,
) -> AsyncIterator[Runtime]:
    """The runtime for a command. Only commands that run agents (``agents``) build the
    models and look for the sandbox; the others open an existing store only (``create``:
    unless told otherwise). A preview outlives the command unless the command
    stops it (``run`` does at the end of a task, without ``--keep-preview``)."""
    settings = cli_settings(workspace, store, config, **(overrides or {}))
    async with open_runtime(
        settings,
        agents=agents,
        execution=None if agents else Sequential,  # reads and records only: no broker
        keep_previews=keep_previews,
        warn=warn,
        create=agents if create is None else create,
    ) as runtime:
        yield runtime
