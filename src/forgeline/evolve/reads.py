"""The evolution loop's read API: tracked changes and cycles, folded from the store.

For ``forgeline changes`` and the server's ``/api/changes``: plain functions of an open
``EventStore`` that return frozen pydantic views (``model_dump(mode="json")`` is the JSON
a client gets). Nothing here writes.

The daemon's stream (``evolve``) lists every cycle and the ids of the changes it
proposed or rejected; each change's own stream (``ctrm-<id>``) is folded by
``core.rsi.fold``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from forgeline.core import rsi
from forgeline.core.events import (
    EVOLVE_STREAM,
    CycleCompleted,
    CycleRecorded,
    SignalCounts,
    SkippedSignal,
    ctrm_stream,
)
from forgeline.core.rsi import RSIChange
from forgeline.errors import ForgelineError
from forgeline.store.base import EventStore

__all__ = [
    "ChangeNotFoundError",
    "ChangeView",
    "CycleView",
    "change_view",
    "change_views",
    "cycle_views",
    "load_change",
    "load_changes",
]


class ChangeNotFoundError(ForgelineError):
    def __init__(self, change_id: str) -> None:
        super().__init__(f"no change {change_id!r} in this store: `forgeline changes` lists them")
        self.change_id = change_id


def _order(change_id: str) -> tuple[int, int]:
    cycle, _, index = change_id.removeprefix("RSI-").partition(".")
    return (int(cycle), int(index)) if cycle.isdigit() and index.isdigit() else (0, 0)


async def _cycles(store: EventStore) -> tuple[list[tuple[CycleRecorded, datetime]], set[int]]:
    recorded: list[tuple[CycleRecorded, datetime]] = []
    completed: set[int] = set()
    for event in await store.read_stream(EVOLVE_STREAM):
        if isinstance(event.data, CycleRecorded):
            recorded.append((event.data, event.created_at))
        elif isinstance(event.data, CycleCompleted):
            completed.add(event.data.cycle)
    return recorded, completed


async def load_change(store: EventStore, change_id: str) -> RSIChange:
    change = rsi.fold(change_id, await store.read_stream(ctrm_stream(change_id)))
    if change.status == "new":
        raise ChangeNotFoundError(change_id)
    return change


async def load_changes(
    store: EventStore,
    *,
    repository: str | None = None,
    statuses: Iterable[str] | None = None,
) -> list[RSIChange]:
    """Every tracked change (of ``repository``; with one of ``statuses``), oldest first."""
    wanted = None if statuses is None else set(statuses)
    recorded, _ = await _cycles(store)
    ids = [
        change_id
        for cycle, _ in recorded
        if repository is None or cycle.repository == repository
        for change_id in (*cycle.proposed, *cycle.rejected)
    ]
    changes: list[RSIChange] = []
    for change_id in sorted(set(ids), key=_order):
        change = rsi.fold(change_id, await store.read_stream(ctrm_stream(change_id)))
        if change.status != "new" and (wanted is None or change.status in wanted):
            changes.append(change)
    return changes


class ChangeView(BaseModel):
    """One tracked change as a person (or a client) sees it."""

    model_config = ConfigDict(frozen=True)

    change_id: str
    status: str
    repository: str
    cycle: int
    kind: str | None
    target_module: str
    priority: int | None
    summary: str
    request: str
    fingerprint: str
    task_id: str | None
    task_status: str | None
    task_branch: str | None
    base_commit: str
    commit: str | None
    generated_hash: str | None
    files: tuple[str, ...]
    error_log: str | None
    regressions: tuple[str, ...]
    before: SignalCounts | None
    """The cycle's scan of the main branch."""
    after: SignalCounts | None
    """The scan of the change's commit, once completed."""
    merged_commit: str | None
    approved_by: str | None
    created_at: datetime | None
    updated_at: datetime | None


class CycleView(BaseModel):
    model_config = ConfigDict(frozen=True)

    cycle: int
    repository: str
    branch: str
    commit: str
    recorded_at: datetime
    completed: bool
    counts: SignalCounts
    proposed: tuple[str, ...]
    rejected: tuple[str, ...]
    skipped: tuple[SkippedSignal, ...]
    notes: tuple[str, ...]


async def _view(
    store: EventStore, change: RSIChange, before: dict[int, SignalCounts]
) -> ChangeView:
    task = change.task
    row = await store.task(change.task_id) if change.task_id else None
    return ChangeView(
        change_id=change.change_id,
        status=change.status,
        repository=change.repository,
        cycle=change.cycle,
        kind=task.patch_definition.kind if task else None,
        target_module=change.target_module,
        priority=task.priority if task else None,
        summary=change.summary,
        request=task.patch_definition.request if task else "",
        fingerprint=change.fingerprint,
        task_id=change.task_id,
        task_status=row.status if row is not None else None,
        task_branch=f"forgeline/{change.task_id}" if change.task_id else None,
        base_commit=change.base_commit,
        commit=change.commit,
        generated_hash=change.generated_hash,
        files=change.files,
        error_log=change.error_log,
        regressions=change.regressions,
        before=before.get(change.cycle),
        after=change.after,
        merged_commit=change.merged_commit,
        approved_by=change.approved_by,
        created_at=change.created_at,
        updated_at=change.updated_at,
    )


async def change_views(
    store: EventStore, *, status: Iterable[str] | None = None, repository: str | None = None
) -> list[ChangeView]:
    """The tracked changes (with one of ``status``), oldest first."""
    recorded, _ = await _cycles(store)
    before = {cycle.cycle: cycle.counts for cycle, _ in recorded}
    found = await load_changes(store, repository=repository, statuses=status)
    return [await _view(store, change, before) for change in found]


async def change_view(store: EventStore, change_id: str) -> ChangeView:
    """One change (``ChangeNotFoundError`` for an unknown id)."""
    recorded, _ = await _cycles(store)
    before = {cycle.cycle: cycle.counts for cycle, _ in recorded}
    return await _view(store, await load_change(store, change_id), before)


async def cycle_views(store: EventStore, *, repository: str | None = None) -> list[CycleView]:
    """The recorded cycles (of ``repository``), oldest first."""
    recorded, completed = await _cycles(store)
    return [
        CycleView(
            cycle=cycle.cycle,
            repository=cycle.repository,
            branch=cycle.branch,
            commit=cycle.commit,
            recorded_at=at,
            completed=cycle.cycle in completed,
            counts=cycle.counts,
            proposed=cycle.proposed,
            rejected=cycle.rejected,
            skipped=cycle.skipped,
            notes=cycle.notes,
        )
        for cycle, at in recorded
        if repository is None or cycle.repository == repository
    ]
