"""The change tracker (note 000's CTRM): records where every evolution change stands.

It talks to the rest only through events: it follows the store's log from its own
checkpoint (subscriber ``ctrm``), learns which pipeline task implements which change from
the changes' ``ctrm.update in_progress`` events, and answers the events of those tasks
with ``CTRMUpdate``s (``core.rsi.tracked`` decides which). Each update is caused by the
task event it answers, so a restarted tracker that reads an event again records nothing
twice.

A completed task's update carries what needs I/O: the commit, the sha256 of the change's
committed diff (``git diff base_commit commit``, the bytes ``git diff`` prints), a scan of
the commit (its "after") and the tests that passed on the base commit and do not on the
change (``regressions``, what auto-merge checks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from forgeline.core import rsi
from forgeline.core.events import CTRMUpdate, Event, NewEvent, ctrm_stream, utcnow
from forgeline.core.rsi import RSIChange
from forgeline.errors import DuplicateEventError, ForgelineError
from forgeline.evolve.reads import load_change, load_changes
from forgeline.evolve.scan import AFTER_KINDS, Scan, Scanner
from forgeline.runtime import Runtime
from forgeline.workspace.git import GitWorkspace

SUBSCRIBER = "ctrm"
ACTOR = "ctrm"


class ChangeTracker:
    """Follows the log for the tasks of tracked changes; one per store."""

    page = 500

    def __init__(
        self,
        runtime: Runtime,
        *,
        scanner: Callable[[Path], Scanner] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self._scanner = scanner or (lambda path: Scanner(path, runtime.settings, runtime.spawner))
        self._scans: dict[tuple[str, str], Scan] = {}
        self._tasks: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    def remember(self, repository: str, scan: Scan) -> None:
        """Keep a scan (a cycle's, of the base commit) so a change's regression check
        need not scan its base again."""
        self._scans[(repository, scan.commit)] = scan

    def watch(self, change_id: str, task_id: str) -> None:
        """Follow ``task_id`` for ``change_id`` from now on (also learnt from the log)."""
        if self._tasks is not None:
            self._tasks[task_id] = change_id

    async def catch_up(self) -> list[RSIChange]:
        """Answer every event recorded since the checkpoint; the changes it moved."""
        async with self._lock:
            store = self.runtime.store
            if self._tasks is None:
                self._tasks = {
                    c.task_id: c.change_id for c in await load_changes(store) if c.task_id
                }
            moved: dict[str, RSIChange] = {}
            position = await store.get_checkpoint(SUBSCRIBER)
            while True:
                events = await store.read_all(after=position, limit=self.page)
                for event in events:
                    change = await self._answer(event)
                    if change is not None:
                        moved[change.change_id] = change
                if events:
                    position = events[-1].position
                    await store.save_checkpoint(SUBSCRIBER, position)
                if len(events) < self.page:
                    return list(moved.values())

    async def _answer(self, event: Event) -> RSIChange | None:
        assert self._tasks is not None
        data = event.data
        if isinstance(data, CTRMUpdate) and data.task_id is not None:
            self._tasks[data.task_id] = event.stream_id.removeprefix("ctrm-")
            return None
        change_id = self._tasks.get(event.correlation_id)
        if change_id is None or not event.stream_id.startswith("task-"):
            return None
        change = await load_change(self.runtime.store, change_id)
        update = rsi.tracked(change, event)
        if update is None:
            return None
        if update.status == "completed":
            update = await self._completed(change, update)
        elif update.status == "failed":
            update = await self._failed(change, update)
        return await self.record(change, update, cause=event.id)

    async def record(
        self, change: RSIChange, update: CTRMUpdate, *, cause: str | None
    ) -> RSIChange:
        """Record ``update`` on the change (once per cause); the change afterwards."""
        store = self.runtime.store
        events: list[NewEvent] = rsi.decide(
            change,
            update,
            correlation_id=change.change_id,
            causation_id=cause,
            actor=ACTOR,
            at=self.clock(),
        )
        with contextlib.suppress(DuplicateEventError):  # answered before a restart
            await store.append(ctrm_stream(change.change_id), events)
        return await load_change(store, change.change_id)

    async def _failed(self, change: RSIChange, update: CTRMUpdate) -> CTRMUpdate:
        """The failure's reason with the task's last failing test run, as its log."""
        assert change.task_id is not None
        last = (await self.runtime.state(change.task_id)).last_test
        if last is None or last.ok:
            return update
        failing = ", ".join(last.failing[:20]) or "none listed"
        log = (
            f"{update.error_log}\n\nthe last test run ({last.commit[:10]}): {last.failed} "
            f"failed, {last.errors} errors, {last.passed} passed; failing: {failing}\n"
            f"{last.output[-3000:]}"
        )
        return update.model_copy(update={"error_log": log})

    async def _completed(self, change: RSIChange, update: CTRMUpdate) -> CTRMUpdate:
        """The completed update with its commit, diff hash, files and scans; a failure to
        produce them fails the change (with the reason) rather than completing it blind."""
        assert change.task_id is not None
        runtime = self.runtime
        try:
            state = await runtime.state(change.task_id)
            repository = GitWorkspace(runtime.workspaces.root / change.repository)
            digest = await repository.diff_sha256(change.base_commit, state.head)
            names = await repository.git("diff", "--name-only", change.base_commit, state.head)
            scanner = self._scanner(repository.path)
            before = self._scans.get((change.repository, change.base_commit))
            if before is None:
                before = await scanner.scan(change.base_commit, AFTER_KINDS)
            after = await scanner.scan(state.head, AFTER_KINDS)
        except ForgelineError as exc:
            return CTRMUpdate(
                status="failed",
                task_id=change.task_id,
                error_log=f"the task completed, but its result could not be checked: {exc}",
            )
        return update.model_copy(
            update={
                "commit": state.head,
                "generated_hash": digest,
                "files": tuple(sorted(n for n in names.splitlines() if n)),
                "after": after.counts,
                "regressions": tuple(sorted(before.passing - after.passing)),
            }
        )
