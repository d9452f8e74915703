"""``forgeline changes``: the changes the evolution daemon tracks; show, approve, reject."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape as e
from rich.table import Table

from forgeline.cli.edge import cli_runtime, console, run_async
from forgeline.cli.options import ConfigFile, Store, Workspace
from forgeline.core.events import SignalCounts, utcnow
from forgeline.core.rsi import STATUSES
from forgeline.evolve.merge import approve_change, decline_change
from forgeline.evolve.reads import ChangeView, change_view, change_views, load_change

app = typer.Typer(
    name="changes",
    help="The changes the evolution daemon proposed: list, show, approve (merge), reject.",
    invoke_without_command=True,
    no_args_is_help=False,
)
ChangeArg = Annotated[str, typer.Argument(help="The change id (see `forgeline changes`).")]


@app.callback()
def changes(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help=f"Only changes with this status ({', '.join(STATUSES)}); repeatable."
        ),
    ] = None,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """List the tracked changes (with --status, only those)."""
    if ctx.invoked_subcommand is not None:
        return
    unknown = [s for s in status or () if s not in STATUSES]
    if unknown:
        console.print(f"[red]error:[/] unknown status {', '.join(unknown)}: {', '.join(STATUSES)}")
        raise typer.Exit(2)

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            views = await change_views(runtime.store, status=status or None)
        if not views:
            console.print("no changes tracked yet: forgeline evolve --once")
            return
        table = Table(title="changes")
        for column in ("id", "status", "kind", "module", "task", "summary"):
            table.add_column(column)
        for view in views:
            table.add_row(
                e(view.change_id),
                e(view.status),
                e(view.kind or "-"),
                e(view.target_module or "-"),
                e(view.task_id or "-"),
                e(view.summary[:80]),
            )
        console.print(table)

    run_async(go())


def _counts(counts: SignalCounts | None) -> str:
    if counts is None:
        return "-"
    return (
        f"{counts.failing_tests} failing / {counts.passing_tests} passing tests, "
        f"{counts.lint_findings} lint, {counts.type_errors} type errors, {counts.todos} TODOs, "
        f"{counts.uncovered_functions} untested functions"
    )


def _merged(view: ChangeView) -> str:
    if view.merged_commit is None:
        return "no"
    return f"{view.merged_commit[:10]} by {view.approved_by}"


def _print(view: ChangeView) -> None:
    rows = [
        ("change", view.change_id),
        ("status", view.status),
        ("cycle", str(view.cycle)),
        ("repository", view.repository),
        ("signal", f"{view.kind or '-'} (priority {view.priority}) {view.fingerprint}"),
        ("module", view.target_module or "-"),
        ("summary", view.summary),
        ("task", f"{view.task_id or '-'} ({view.task_status or '-'}) {view.task_branch or ''}"),
        ("base", view.base_commit[:10] or "-"),
        ("commit", (view.commit or "-")[:10]),
        ("diff sha256", view.generated_hash or "-"),
        ("files", ", ".join(view.files) or "-"),
        ("before", _counts(view.before)),
        ("after", _counts(view.after)),
        ("regressions", ", ".join(view.regressions) or "none"),
        (
            "merged",
            f"{view.merged_commit[:10]} by {view.approved_by}" if view.merged_commit else "no",
        ),
    ]
    for name, value in rows:
        console.print(f"[bold]{name:<12}[/] {e(value)}", highlight=False)
    if view.error_log:
        console.print(f"[bold]{'log':<12}[/] {e(view.error_log)}", highlight=False)
    if view.request:
        console.print(f"[bold]request[/]\n{e(view.request)}", highlight=False)


@app.command()
def show(
    change: ChangeArg,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Show a change: its signal, task, commit, diff hash, before/after and outcome."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            _print(await change_view(runtime.store, change))

    run_async(go())


@app.command()
def approve(
    change: ChangeArg,
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Merge a completed change into the repository's main branch."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            found = await load_change(runtime.store, change)
            repository = runtime.workspaces.repository(found.repository)
            merged = await approve_change(runtime.store, repository, found, "person", at=utcnow())
        console.print(
            f"{e(merged.change_id)} merged into {e(merged.branch)} as "
            f"{(merged.merged_commit or '')[:10]}",
            highlight=False,
        )

    run_async(go())


@app.command()
def reject(
    change: ChangeArg,
    reason: Annotated[str, typer.Option(help="Why (kept with the change).")] = "declined",
    workspace: Workspace = Path("."),
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Decline an open change: it is never merged, and its task (if running) is cancelled."""

    async def go() -> None:
        async with cli_runtime(workspace, store, config, agents=False) as runtime:
            found = await load_change(runtime.store, change)
            declined = await decline_change(runtime.store, found, reason, at=utcnow())
            if found.task_id is not None:
                state = await runtime.state(found.task_id)
                if not state.terminal:
                    await runtime.cancel(found.task_id, f"change {change} declined: {reason}")
        console.print(f"{e(declined.change_id)} declined", highlight=False)

    run_async(go())
