"""How events and tasks look in a terminal (Rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as e
from rich.table import Table

from forgeline.core.events import (
    ArchitectureProposed,
    ChangeCompleted,
    ChangeFailed,
    ClarificationAnswered,
    ClarificationRequested,
    CodePrOpened,
    DeployStatus,
    Event,
    PlanCreated,
    PlanItemCompleted,
    PlanItemDispatched,
    PreviewStopped,
    ReviewDecision,
    StageFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskInitiated,
    TestResults,
)
from forgeline.core.task import TaskState
from forgeline.store.base import TaskRow


def short(commit: str) -> str:
    return commit[:10]


def describe(event: Event) -> str:
    """One line saying what an event means."""
    d = event.data
    match d:
        case TaskInitiated():
            return f"request: {e(repr(d.request))} on branch {e(d.branch)}"
        case PlanCreated():
            return f"{len(d.items)} plan item(s): {e(d.summary)} ({short(d.commit)})"
        case ArchitectureProposed():
            kind = e(f"[{d.run.kind}]")
            return f"{e(d.summary)} {kind} ADR {e(d.adr_path)} ({short(d.commit)})"
        case PlanItemDispatched():
            return f"item {e(d.item_id)} dispatched"
        case PlanItemCompleted():
            return f"item {e(d.item_id)} done: {e(', '.join(d.files))} ({short(d.commit)})"
        case ClarificationRequested():
            return f"[bold yellow]question[/]: {e(d.question)}"
        case ClarificationAnswered():
            return f"answer: {e(d.answer)}"
        case CodePrOpened():
            return f"code ready for testing ({e(d.reason)}, round {d.round}) at {short(d.commit)}"
        case TestResults():
            colour = "green" if d.ok else "red"
            text = f"[{colour}]{d.passed} passed, {d.failed} failed, {d.errors} errors[/]"
            if d.failing:
                text += f": {e(', '.join(d.failing[:5]))}"
            return text + (" (timed out)" if d.timed_out else "")
        case ReviewDecision():
            if d.approved:
                return "[green]approved[/]"
            return "[yellow]changes requested[/]: " + e("; ".join(d.comments))
        case DeployStatus():
            outcome = "[green]ok[/]" if d.ok else "[red]failed[/]"
            return f"{e(d.kind)} {outcome}" + (f" at {e(d.url)}" if d.url else "")
        case StageFailed():
            return f"[red]{e(d.stage)} failed[/]: {e(d.error)}"
        case TaskCompleted():
            return f"[bold green]completed[/]: {e(d.summary)}"
        case TaskFailed():
            return f"[bold red]failed[/]: {e(d.reason)}"
        case TaskCancelled():
            return f"[yellow]cancelled[/]: {e(d.reason)}"
        case PreviewStopped():
            return f"preview (pid {d.pid}) stopped"
        case ChangeCompleted():
            return f"change committed {short(d.commit)} sha256 {e(d.diff_sha256[:12])}"
        case ChangeFailed():
            return f"change failed: {e(d.error_log[:200])}"
        case _:
            return ""


def print_event(console: Console, event: Event) -> None:
    stamp = event.created_at.strftime("%H:%M:%S")
    console.print(
        f"[dim]{stamp}[/] [cyan]{event.actor:<12}[/] [bold]{event.type:<22}[/] {describe(event)}",
        highlight=False,
    )


def tasks_table(rows: list[TaskRow]) -> Table:
    table = Table("task", "status", "phase", "updated", "request")
    for row in rows:
        table.add_row(
            row.id,
            row.status,
            row.current_phase,
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.request[:60],
        )
    return table


def summary(console: Console, state: TaskState, commits: list[tuple[str, str]]) -> None:
    console.rule(f"task {state.task_id}: {state.status}")
    console.print(f"branch   {e(state.branch)}")
    console.print(f"worktree {e(state.workspace)}")
    for sha, subject in commits:
        console.print(f"commit   {sha} {e(subject)}", highlight=False)
    if state.last_test is not None:
        t = state.last_test
        console.print(f"tests    {t.passed} passed, {t.failed} failed, {t.errors} errors")
    if state.last_review is not None:
        r = state.last_review
        console.print("review   " + ("approved" if r.approved else "changes requested"))
    if state.deploy is not None:
        d = state.deploy
        where = f" at {d.url}" if d.url else ""
        console.print(f"deploy   {d.kind} {'ok' if d.ok else 'failed'}{e(where)}")
    if state.failure:
        console.print(f"[red]reason[/]   {e(state.failure)}")
