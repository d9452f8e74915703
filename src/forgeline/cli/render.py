"""How events and tasks look in a terminal (Rich)."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.console import Console
from rich.markup import escape as e
from rich.table import Table

from forgeline.core.events import (
    ArchitectureProposed,
    Budget,
    BudgetApproved,
    ChangeCompleted,
    ChangeFailed,
    ClarificationAnswered,
    ClarificationRequested,
    CodePrOpened,
    ContextCompacted,
    DeployStatus,
    EmailSent,
    Event,
    FixAttempted,
    GitHubCalled,
    PackagesSynced,
    PageFetched,
    PlanCreated,
    PlanItemCompleted,
    PlanItemDispatched,
    PreviewStopped,
    ResearchWritten,
    ReviewDecision,
    RunUsage,
    SearchCached,
    StageFailed,
    TaskAwaitingApproval,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskInitiated,
    TestResults,
    ToolCommand,
    ToolSearched,
)
from forgeline.core.task import TaskState
from forgeline.llm.metered import UsageRow
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
            return text + (" (timed out)" if d.timed_out else "") + usage_text(d.usage)
        case ReviewDecision():
            if d.approved:
                return "[green]approved[/]"
            return "[yellow]changes requested[/]: " + e("; ".join(d.comments))
        case DeployStatus():
            outcome = "[green]ok[/]" if d.ok else "[red]failed[/]"
            where = f" at {e(d.url)}" if d.url else ""
            return f"{e(d.kind)} {outcome}{where}{usage_text(d.usage)}"
        case ToolCommand():
            command = e(shlex.join(d.argv)[:200])
            if d.denied:
                why = f"rule {d.rule!r}" if d.rule else "no rule allows it"
                return f"[red]refused[/] $ {command} ({e(why)})"
            status = "timed out" if d.timed_out else f"exit {d.exit_code}"
            colour = "green" if d.exit_code == 0 and not d.timed_out else "red"
            return f"$ {command} [{colour}]{status}[/]{usage_text(d.usage)}"
        case ToolSearched():
            if d.error:
                return f"search {e(repr(d.query))} ({e(d.provider)}) [red]failed[/]: {e(d.error)}"
            cached = " from the cache" if d.cached else ""
            return f"search {e(repr(d.query))} ({e(d.provider)}): {len(d.hits)} result(s){cached}"
        case SearchCached():
            return f"kept {len(d.hits)} result(s) of {e(repr(d.query))} for {d.ttl_s:g}s"
        case PageFetched():
            if d.error:
                return f"fetch {e(d.url)} [red]refused[/]: {e(d.error)}"
            title = f" {e(repr(d.title))}" if d.title else ""
            return f"fetched {e(d.final_url or d.url)}{title}: {d.chars} characters"
        case ResearchWritten():
            return f"wrote {e(d.path)} with {len(d.references)} reference(s)"
        case GitHubCalled():
            target = e(d.repository + (f"#{d.number}" if d.number is not None else ""))
            what = f"github {e(d.action.replace('_', ' '))} {target}"
            if d.ref:
                what += f" ({e(d.ref)})"
            if d.error:
                return f"{what} [red]failed[/]: {e(d.error)}"
            return what + (f": {e(d.url)}" if d.url else "")
        case EmailSent():
            to = e(", ".join(d.recipients))
            if d.error:
                return f"e-mail ({e(d.outcome)}) to {to} [red]failed[/]: {e(d.error)}"
            attached = f", attached {e(', '.join(d.attachments))}" if d.attachments else ""
            return f"e-mailed {to}: {e(d.subject)}{attached}"
        case FixAttempted():
            colour = {"applied": "cyan", "rejected": "red", "no_progress": "yellow"}[d.outcome]
            text = f"attempt {d.attempt} [{colour}]{e(d.outcome.replace('_', ' '))}[/]"
            text += f" in {d.duration_s:.1f}s"
            if d.commit:
                text += f" at {short(d.commit)}"
            return text + (f": {e(d.reason[:200])}" if d.reason else "")
        case PackagesSynced():
            pins = {pin.name: pin for pin in d.packages}
            changed = [f"+{n} {pins[n].version}" if n in pins else f"+{n}" for n in d.installed]
            changed += [f"-{n}" for n in d.removed]
            return f"packages synced ({len(d.packages)} wheels): {e(' '.join(changed))}"
        case StageFailed():
            return f"[red]{e(d.stage)} failed[/]: {e(d.error)}"
        case TaskAwaitingApproval():
            return f"[bold yellow]paused[/] ({e(d.stage)}): {e(d.reason)}"
        case BudgetApproved():
            return f"budget raised to {e(budget_text(d.budget))}; resuming"
        case ContextCompacted():
            return e(d.summary)
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


def usage_text(usage: RunUsage | None) -> str:
    """`` (cpu 0.61s, peak 104 MiB, 1.4s)`` for a run's resource usage; "" without one."""
    if usage is None:
        return ""
    parts = []
    if usage.cpu_s is not None:
        parts.append(f"cpu {usage.cpu_s:.2f}s")
    if usage.peak_memory_bytes is not None:
        parts.append(f"peak {usage.peak_memory_bytes / 1024**2:.0f} MiB")
    parts.append(f"{usage.wall_s:.1f}s")
    text = f" [dim]({', '.join(parts)})[/]"
    if usage.limits_hit:
        text += f" [red]limit hit: {e(', '.join(usage.limits_hit))}[/]"
    return text


def budget_text(budget: Budget) -> str:
    parts = []
    if budget.tokens is not None:
        parts.append(f"{budget.tokens} tokens")
    if budget.usd is not None:
        parts.append(f"${budget.usd:.4f}")
    return " and ".join(parts) or "no limit"


def usage_table(rows: list[UsageRow], title: str) -> Table:
    table = Table(
        "task", "role", "model", "calls", "cached", "in", "out", "cost $", "latency s", title=title
    )
    for row in rows:
        table.add_row(
            row.task_id,
            row.role,
            e(row.model),
            str(row.calls),
            str(row.cache_hits),
            str(row.input_tokens),
            str(row.output_tokens),
            f"{row.cost_usd:.4f}",
            f"{row.latency_ms / 1000:.1f}",
        )
    return table


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


def summary(
    console: Console, state: TaskState, commits: list[tuple[str, str]], worktree: Path
) -> None:
    console.rule(f"task {state.task_id}: {state.status}")
    console.print(f"branch   {e(state.branch)}")
    console.print(f"worktree {e(str(worktree))}")
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
