"""The commands of distributed mode: ``worker``, ``workers``, ``retry``.

``forgeline worker`` serves the broker's queues until SIGINT/SIGTERM (the messages in
flight are finished, recorded and acknowledged first); ``workers`` lists the workers by
their heartbeats; ``retry`` queues a task's dead-lettered work again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.markup import escape
from rich.table import Table

from forgeline.cli.edge import EXIT_USAGE, console, errors, given, run_async, sandbox_flags, warn
from forgeline.cli.options import (
    Broker,
    ConfigFile,
    NoCache,
    RequireSandbox,
    Store,
    TaskArg,
    Unsafe,
)
from forgeline.config import Settings, load_settings
from forgeline.core.events import utcnow
from forgeline.core.reactions import STAGES, Role
from forgeline.errors import ForgelineError
from forgeline.pipeline.execution import Sequential
from forgeline.redaction import redact
from forgeline.runtime import open_runtime

Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="The directory holding the repositories (default: FORGELINE_WORKSPACES_ROOT, "
        "else the current directory).",
    ),
]


def _settings(root: Path | None, config: Path | None, **overrides: object) -> Settings:
    base = (root or Path.cwd()).resolve()
    try:
        settings = load_settings(base, config, **given(**overrides))
    except ForgelineError as exc:  # a bad config file: its message, no traceback
        errors.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    return settings.model_copy(update={"workspaces_root": settings.workspaces_root or base})


def _stages(text: str | None) -> list[Role]:
    if text is None:
        return list(STAGES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        errors.print(
            f"[red]error:[/] unknown stage(s) {', '.join(unknown) or '(none)'}: "
            f"choose from {', '.join(STAGES)}"
        )
        raise typer.Exit(EXIT_USAGE)
    return [cast(Role, n) for n in names]


def worker(
    stages: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated stages this worker runs (default: all seven); every "
            "worker also takes the orchestrator's decisions."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Messages handled at once (default: [transport] concurrency)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="This worker's name (default: host:pid).")
    ] = None,
    relay: Annotated[
        bool | None, typer.Option(help="Stand by as the outbox relay (one publishes at a time).")
    ] = None,
    store: Store = None,
    broker: Broker = None,
    root: Root = None,
    config: ConfigFile = None,
    no_cache: NoCache = False,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
) -> None:
    """Take work from the broker and run it, on this machine, until stopped."""
    from forgeline.transport.worker import BrokerWorker

    roles = _stages(stages)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = _settings(
        root,
        config,
        store=store,
        broker=broker,
        **sandbox_flags(unsafe_no_sandbox, require_sandbox, no_cache),
    )

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(settings, agents=True, warn=warn) as runtime:
            serving = BrokerWorker(runtime, roles, concurrency=concurrency, relay=relay, name=name)
            console.print(
                f"worker {escape(serving.id)} takes {', '.join(serving.roles)} from "
                f"{escape(serving.broker.location)}",
                highlight=False,
            )
            await serving.run(stop)
        console.print(f"worker stopped after {serving.handled} message(s)")

    run_async(go())


def workers(store: Store = None, root: Root = None, config: ConfigFile = None) -> None:
    """List the workers: their stages, what each runs now, when each was last seen."""
    from forgeline.transport.roster import workers as roster

    settings = _settings(root, config, store=store)

    async def go() -> None:
        async with open_runtime(settings, agents=False, create=False, execution=Sequential) as rt:
            seen = await roster(rt.store, utcnow())
        if not seen:
            console.print("no worker has reported yet: start one with `forgeline worker`")
            return
        table = Table("worker", "status", "stages", "running", "relay", "last seen")
        for w in seen:
            running = ", ".join(f"{r.role} on {r.task_id}" for r in w.running) or "-"
            table.add_row(
                escape(w.worker),
                w.status,
                ",".join(r for r in w.roles if r != "orchestrator"),
                escape(running),
                "yes" if w.relay else "",
                _ago(w.last_seen),
            )
        console.print(table)

    run_async(go())


def retry(
    task: TaskArg,
    store: Store = None,
    broker: Broker = None,
    root: Root = None,
    config: ConfigFile = None,
) -> None:
    """Queue a task's dead-lettered work again (after fixing what made it fail)."""
    from forgeline.transport.deadletters import retry as requeue
    from forgeline.transport.execution import BrokerExecution

    settings = _settings(root, config, store=store, broker=broker)

    async def go() -> int:
        async with open_runtime(
            settings, agents=False, create=False, execution=BrokerExecution
        ) as runtime:
            await runtime.state(task)  # a clear error for an unknown id
            execution = cast(BrokerExecution, runtime.execution)
            return await requeue(runtime.store, execution.broker, task, actor="user")

    count = run_async(go())
    console.print(f"task {task}: {count} message(s) queued again")


def _ago(when: datetime) -> str:
    seconds = max(0.0, (utcnow() - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"
