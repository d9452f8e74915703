"""``forgeline evolve``: the evolution daemon on a repository (docs/evolve.md)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgeline.cli.edge import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    cli_runtime,
    console,
    errors,
    given,
    run_async,
    sandbox_flags,
)
from forgeline.cli.options import ConfigFile, RequireSandbox, Store, Unsafe, Workspace
from forgeline.evolve.config import parse_duration
from forgeline.evolve.daemon import EvolutionDaemon


def evolve(
    workspace: Workspace = Path("."),
    once: Annotated[
        bool, typer.Option("--once", help="Run one cycle (and its changes), then stop.")
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option(
            help="Time between cycles: 90s, 10m, 2h (default: the evolve interval setting)."
        ),
    ] = None,
    max_changes: Annotated[
        int | None, typer.Option(min=0, help="Changes one cycle may propose (default 2).")
    ] = None,
    auto_merge: Annotated[
        bool,
        typer.Option(
            "--auto-merge",
            help="Merge changes whose tests and review pass and that break no passing test, "
            "without `forgeline changes approve`.",
        ),
    ] = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Find work in a repository and have the agents do it on branches of their own.

    It looks for failing tests, goals (.forgeline/goals.md), type errors, lint findings,
    TODOs and untested functions. Nothing reaches the main branch until `forgeline changes
    approve ID` (or --auto-merge). Ctrl-C finishes the step in flight, records it and
    stops; run it again to go on (docs/evolve.md)."""
    if once and interval is not None:
        errors.print("[red]error:[/] give --once or --interval, not both")
        raise typer.Exit(EXIT_USAGE)
    try:
        every = parse_duration(interval) if interval is not None else None
    except ValueError as exc:
        errors.print(f"[red]error:[/] --interval: {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    overrides = sandbox_flags(unsafe_no_sandbox, require_sandbox)

    async def go() -> int:
        async with cli_runtime(
            workspace, store, config, agents=True, overrides=overrides
        ) as runtime:
            settings = runtime.settings.evolve
            chosen = settings.model_copy(
                update=given(max_changes=max_changes, auto_merge=auto_merge or None)
            )
            daemon = EvolutionDaemon(
                runtime,
                workspace,
                config=chosen,
                report=lambda line: console.print(escape(line), highlight=False),
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await daemon.run(once=once, interval=every, stop=stop)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            if stop.is_set():
                errors.print("[yellow]stopped[/]: work in flight was finished and recorded")
                return EXIT_INTERRUPTED
            console.print("`forgeline changes` lists the changes; approve one to merge it")
            return 0

    raise typer.Exit(run_async(go()))
