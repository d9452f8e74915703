"""``forgeline doctor``: the checks of ``forgeline.doctor``, printed with how to fix each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from forgeline.doctor import Finding, diagnose, summary
from forgeline.redaction import redact

STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor(
    workspace: Annotated[
        Path,
        typer.Option(
            "--workspace",
            "-w",
            help="The repository to check for (its store, config and disk).",
            envvar="FORGELINE_WORKSPACE",
        ),
    ] = Path("."),
    reach: Annotated[
        bool,
        typer.Option("--reach", help="Also ask each provider for its model list (network)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for each --reach request.")
    ] = 5.0,
    store: Annotated[str | None, typer.Option("--store", help="Event store URL to check.")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: <workspace>/forgeline.toml)."),
    ] = None,
) -> None:
    """Check that a run can work here: the sandbox, the local model, the store, git, disk
    space and the configured providers (keys are never printed). Says how to fix each
    problem; exits 1 when something would stop a run."""
    findings = asyncio.run(diagnose(workspace, config, store=store, reach=reach, timeout=timeout))
    console = Console()
    console.print(table(findings))
    failures, warnings = summary(findings)
    if failures:
        console.print(f"[bold red]{failures} problem(s) would stop a run[/]; fix them as shown")
        raise typer.Exit(1)
    said = f" ({warnings} warning(s))" if warnings else ""
    console.print(f"[green]ready[/]: nothing stops a run{said}")


def table(findings: list[Finding]) -> Table:
    grid = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("check", "", "found", "fix"):
        grid.add_column(column, overflow="fold")
    for f in findings:
        grid.add_row(
            escape(f.check), STYLE[f.status], escape(redact(f.detail)), escape(redact(f.fix))
        )
    return grid
