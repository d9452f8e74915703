"""The event log: pages of it (``/api/events``), the live stream as Server-Sent Events
(``/api/events/stream``) and over a WebSocket (``/api/events/ws``), the change tracker's
records (``/api/changes``) and model usage (``/api/usage``).

Both streams resume from the position the client gives (``?after=``, SSE's
``Last-Event-ID``, or the WebSocket's first message): they send every event after it in
the log's order, each once, then follow the log as it grows. The API keys' stream is
never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from forgeline.api.context import Server
from forgeline.api.deps import ReadKey, ServerDep, check_key, granted
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.schemas import ChangeOut, EventPage, UsageOut, event_out, usage_out
from forgeline.core import changes
from forgeline.core.events import KEYS_STREAM, Event, task_stream, usage_stream
from forgeline.llm.metered import usage_rows

router = APIRouter(tags=["events"], responses=answers(*KEYED, 422))

PAGE = 500
KEEPALIVE = 15.0
"""Seconds of silence after which the SSE stream sends a comment (proxies keep it)."""

MAX_POSITION = 2**63 - 1
"""The largest position a store holds (a signed 64-bit integer in SQLite and Postgres)."""
After = Annotated[
    int, Query(ge=0, le=MAX_POSITION, description="Events after this global position.")
]
TaskFilter = Annotated[str | None, Query(max_length=64, description="One task's events.")]
Types = Annotated[list[str] | None, Query(alias="type", description="Only these types.")]


def visible(event: Event, task: str | None, types: list[str] | None) -> bool:
    if event.stream_id == KEYS_STREAM:
        return False
    if task is not None and event.correlation_id != task:
        return False
    return types is None or event.type in types


@router.get("/api/events", response_model=EventPage)
async def events(
    server: ServerDep,
    key: ReadKey,
    after: After = 0,
    task: TaskFilter = None,
    types: Types = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """A page of the log by global position (``next_after`` continues it); with
    ``task``, every event of that task (its stream, its model usage, its changes)."""
    store = server.runtime.store
    found: list[Event] = []
    position = after
    if task is not None:  # nothing of a task comes before its first event
        first = await store.read_stream(task_stream(task))
        position = max(after, first[0].position - 1) if first else after
    for _ in range(20):  # at most 20 pages scanned per request
        page = await store.read_all(after=position, limit=PAGE)
        for event in page:
            position = event.position
            if visible(event, task, types):
                found.append(event)
                if len(found) == limit:
                    return EventPage(events=[event_out(e) for e in found], next_after=position)
        if len(page) < PAGE:
            break
    return EventPage(events=[event_out(e) for e in found], next_after=position)


async def follow(
    server: Server, after: int, task: str | None, types: list[str] | None
) -> AsyncIterator[Event | None]:
    """The visible events after ``after``, then new ones as they are recorded; None
    after ``KEEPALIVE`` seconds without one."""
    store = server.runtime.store
    loop = asyncio.get_running_loop()
    position, quiet_since = after, loop.time()
    while True:
        mark = store.commit_count
        page = await store.read_all(after=position, limit=PAGE)
        for event in page:
            position = event.position
            if visible(event, task, types):
                quiet_since = loop.time()
                yield event
        if len(page) < PAGE:
            if loop.time() - quiet_since >= KEEPALIVE:
                quiet_since = loop.time()
                yield None
            await store.wait_for_append(mark)


def _json(event: Event) -> str:
    return event_out(event).model_dump_json()


@router.get(
    "/api/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream(
    server: ServerDep,
    key: ReadKey,
    after: After = 0,
    task: TaskFilter = None,
    types: Types = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """The live log as Server-Sent Events: ``id`` is the event's position, ``event`` its
    type, ``data`` the event as JSON. A reconnecting client's ``Last-Event-ID`` resumes
    after that event."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        after = max(after, min(int(last_event_id), MAX_POSITION))

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for event in follow(server, after, task, types):
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"id: {event.position}\nevent: {event.type}\ndata: {_json(event)}\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.websocket("/api/events/ws")
async def websocket(socket: WebSocket) -> None:
    """The live log over a WebSocket. The key comes as ``Authorization: Bearer`` or, from
    a browser, in the first message: ``{"key": "...", "after": 0, "task": null}``. Then
    each event is one text message (the event as JSON). Closes with 4401 (no valid key),
    4403 or 4429."""
    server: Server = socket.app.state.server
    await socket.accept()
    try:
        hello = await asyncio.wait_for(socket.receive_json(), 10.0)
    except (TimeoutError, ValueError, WebSocketDisconnect):
        await _close(socket, 4400, 'send {"key": ..., "after": N} first')
        return
    if not isinstance(hello, dict):
        await _close(socket, 4400, "the first message is a JSON object")
        return
    header = socket.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else hello.get("key")
    try:
        granted(await check_key(server, token if isinstance(token, str) else None), "read")
    except ApiError as exc:
        await _close(socket, 4000 + exc.status, exc.detail)
        return
    after = hello.get("after", 0)
    task = hello.get("task")
    types = hello.get("types")
    if not (
        isinstance(after, int)
        and 0 <= after <= MAX_POSITION
        and (task is None or isinstance(task, str))
        and (types is None or (isinstance(types, list) and all(isinstance(t, str) for t in types)))
    ):
        await _close(socket, 4422, "after is a position (0 or more), task a task id")
        return

    async def send() -> None:
        async for event in follow(server, after, task, types):
            if event is not None:
                await socket.send_text(_json(event))

    async def until_closed() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.receive_text()

    tasks = [asyncio.create_task(send()), asyncio.create_task(until_closed())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(code=code, reason=reason[:120])


@router.get("/api/changes", response_model=list[ChangeOut])
async def change_records(
    server: ServerDep, key: ReadKey, task: TaskFilter = None
) -> list[ChangeOut]:
    """The change tracker's records (each stage's code change: status, commit, diff
    digest, files or error), oldest first."""
    store = server.runtime.store
    streams: dict[str, list[Event]] = {}
    position = 0
    while True:
        page = await store.read_all(after=position, limit=PAGE * 2)
        for event in page:
            position = event.position
            if event.stream_id.startswith("change-") and (
                task is None or event.correlation_id == task
            ):
                streams.setdefault(event.stream_id, []).append(event)
        if len(page) < PAGE * 2:
            break
    out = []
    for stream_id, recorded in streams.items():
        state = changes.fold(stream_id.removeprefix("change-"), recorded)
        out.append(
            ChangeOut(
                id=state.change_id,
                task_id=state.task_id,
                stage=state.stage,
                status=state.status,
                description=state.description,
                commit=state.commit,
                diff_sha256=state.diff_sha256,
                files=list(state.files),
                error_log=state.error_log,
            )
        )
    return out


@router.get("/api/usage", response_model=list[UsageOut])
async def usage(server: ServerDep, key: ReadKey, task: TaskFilter = None) -> list[UsageOut]:
    """Model usage per task, role and model (a ``*`` row totals each task)."""
    store = server.runtime.store
    ids = [task] if task is not None else [row.id for row in await store.tasks()]
    rows = []
    for task_id in ids:
        rows += usage_rows(task_id, await store.read_stream(usage_stream(task_id)))
    return [usage_out(r) for r in rows]
