"""The options the commands share (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

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
TaskArg = Annotated[
    str, typer.Argument(help="The task id, or its first characters (see `forgeline tasks`).")
]
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
KeepPreview = Annotated[bool, typer.Option(help="Leave a web preview running after the task ends.")]
Broker = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="RabbitMQ URL (amqp://...): hand the work to `forgeline worker` processes; "
        "needs a Postgres --store (default: FORGELINE_BROKER).",
    ),
]
