"""``/api/tasks``: submit, list, show, and act on tasks (cancel, resume, answer,
approve). Reading takes a read key; the rest a write key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from forgeline.api.context import Server
from forgeline.api.deps import ReadKey, ServerDep, WriteKey
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.routes.workspaces import repository_name
from forgeline.api.schemas import (
    AnswerIn,
    ApproveIn,
    TaskIn,
    TaskOut,
    TaskPage,
    summary_out,
    task_out,
)
from forgeline.core.events import task_stream, usage_stream
from forgeline.core.reactions import ORCHESTRATOR
from forgeline.core.task import settled
from forgeline.errors import InvalidRequestError
from forgeline.llm.metered import usage_rows
from forgeline.pipeline.runner import StageInterrupted
from forgeline.transport.deadletters import dead_letters
from forgeline.transport.execution import BrokerExecution

log = logging.getLogger("forgeline.api")

router = APIRouter(
    prefix="/api/tasks", tags=["tasks"], responses=answers(*KEYED, 400, 403, 404, 409, 413, 422)
)

Status = Literal[
    "running",
    "waiting",
    "needs_clarification",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
]


async def task_view(server: Server, task_id: str) -> TaskOut:
    runtime = server.runtime
    state = await runtime.state(task_id)
    row = await runtime.store.task(task_id)
    usage = usage_rows(task_id, await runtime.store.read_stream(usage_stream(task_id)))
    commits = await runtime.commits(state)
    parked = await dead_letters(runtime.store, task_id)
    return task_out(state, row.current_phase if row else "", usage, commits, parked)


@router.post("", status_code=201, response_model=TaskOut)
async def submit(body: TaskIn, server: ServerDep, key: WriteKey) -> TaskOut:
    """Record a task on a repository under the workspaces root; the server's workers
    take it from there."""
    name = repository_name(server, body.workspace)
    task_id = await server.runtime.submit(
        body.request,
        name,
        max_fix_rounds=body.max_fix_rounds,
        max_review_rounds=body.max_review_rounds,
        budget=body.budget.budget() if body.budget else None,
    )
    return await task_view(server, task_id)


@router.get("", response_model=TaskPage)
async def list_tasks(
    server: ServerDep,
    key: ReadKey,
    status: Status | None = None,
    workspace: Annotated[str | None, Query(max_length=1024)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskPage:
    """Tasks, newest first."""
    position = await server.runtime.store.last_position()
    rows = sorted(await server.runtime.store.tasks(), key=lambda r: r.created_at, reverse=True)
    if status is not None:
        rows = [r for r in rows if r.status == status]
    if workspace is not None:
        name = repository_name(server, workspace)
        kept = []
        for row in rows:
            if (await server.runtime.state(row.id)).repository == name:
                kept.append(row)
        rows = kept
    page = rows[offset : offset + limit]
    return TaskPage(
        tasks=[summary_out(r) for r in page],
        total=len(rows),
        offset=offset,
        limit=limit,
        position=position,
    )


@router.get("/{task_id}", response_model=TaskOut)
async def show(task_id: str, server: ServerDep, key: ReadKey) -> TaskOut:
    """Where the task stands: plan, agent, tests, review, preview, usage, commits."""
    return await task_view(server, task_id)


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel(task_id: str, server: ServerDep, key: WriteKey) -> TaskOut:
    """Cancel the task: its stages running here stop, its preview stops."""
    await _act(server.runtime.cancel(task_id, f"cancelled through the API by {key.name}"))
    return await task_view(server, task_id)


@router.post("/{task_id}/answer", response_model=TaskOut)
async def answer(task_id: str, body: AnswerIn, server: ServerDep, key: WriteKey) -> TaskOut:
    """Answer the task's open clarification question."""
    await _act(server.runtime.answer(task_id, body.answer))
    return await task_view(server, task_id)


@router.post("/{task_id}/approve", response_model=TaskOut)
async def approve(task_id: str, body: ApproveIn, server: ServerDep, key: WriteKey) -> TaskOut:
    """Give a task paused by its budget a new budget (totals for the whole task)."""
    await _act(server.runtime.approve(task_id, body.budget.budget()))
    return await task_view(server, task_id)


@router.post("/{task_id}/resume", response_model=TaskOut, status_code=202)
async def resume(task_id: str, server: ServerDep, key: WriteKey) -> TaskOut:
    """Start over from the last recorded step: stop the task's stages running here, put
    its worktree at its last recorded commit and handle again every event whose effect
    was never recorded (a stage that crashed, a server that stopped). With a broker, that
    work is queued for the cluster's workers instead."""
    runtime = server.runtime
    state = await runtime.state(task_id)
    if settled(state):
        raise ApiError(409, f"task {task_id} is {state.status}: there is nothing to resume")
    if isinstance(runtime.execution, BrokerExecution):  # the cluster's workers redo it
        await runtime.execution.resume(task_id)
        return await task_view(server, task_id)
    pipeline = runtime.pipeline
    await pipeline.interrupt(task_id)
    await pipeline.recover(task_id)

    async def redo() -> None:
        if state.status == "waiting":
            await server.assignments.assign_waiting()
        try:
            for event in await runtime.store.read_stream(task_stream(task_id)):
                await pipeline.handle(event, ORCHESTRATOR)
                await pipeline.handle(event, None)
        except StageInterrupted as exc:  # a later resume or a cancel took over
            log.info("resume of %s stopped: %s", task_id, exc)

    server.spawn(redo(), f"resume {task_id}")
    return await task_view(server, task_id)


async def _act(action: Awaitable[None]) -> None:
    try:
        await action
    except InvalidRequestError as exc:
        raise ApiError(409, str(exc)) from None
