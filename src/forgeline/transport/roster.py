"""Which workers there are, from their heartbeats (``forgeline workers``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from forgeline.core.events import WORKERS_STREAM, RunningWork
from forgeline.store.base import EventStore

LOST_AFTER = 3
"""Heartbeat intervals without one, after which a worker counts as lost."""
RECENT = 5000
"""Heartbeats read back: the workers seen among the most recent ones are listed."""


@dataclass(frozen=True)
class WorkerView:
    worker: str
    host: str
    pid: int
    roles: tuple[str, ...]
    concurrency: int
    running: tuple[RunningWork, ...]
    relay: bool
    last_seen: datetime
    status: Literal["alive", "lost", "stopped"]


async def workers(store: EventStore, now: datetime) -> list[WorkerView]:
    """Every worker among the recent heartbeats, its latest state first by name."""
    version = await store.stream_version(WORKERS_STREAM)
    events = await store.read_stream(WORKERS_STREAM, after_version=max(0, version - RECENT))
    seen: dict[str, WorkerView] = {}
    for event in events:
        data = event.data
        if data.type == "worker.heartbeat":
            late = (now - event.created_at).total_seconds() > LOST_AFTER * data.interval
            seen[data.worker] = WorkerView(
                data.worker,
                data.host,
                data.pid,
                data.roles,
                data.concurrency,
                data.running,
                data.relay,
                event.created_at,
                "lost" if late else "alive",
            )
        elif data.type == "worker.stopped" and data.worker in seen:
            before = seen[data.worker]
            seen[data.worker] = WorkerView(
                before.worker,
                before.host,
                before.pid,
                before.roles,
                before.concurrency,
                (),
                False,
                event.created_at,
                "stopped",
            )
    return sorted(seen.values(), key=lambda w: w.worker)
