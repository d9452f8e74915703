"""The evolution daemon of note 000: cycles that find work in a repository and hand it to
the implementation agent, one more entry point on the runtime.

A cycle (``EvolutionDaemon.cycle``):

1. the change tracker catches up with the log (so the guardrails see every change as it
   stands);
2. the tip of the main branch is scanned apart from the person's checkout
   (``scan.Scanner``);
3. ``core.evolution.plan_cycle`` ranks the signals and the guardrails choose;
4. each chosen signal becomes an ``RSITask``, validated (an invalid one is recorded as
   ``rsi.task.rejected`` with pydantic's reason and never runs), and the cycle is
   recorded with its tasks in one transaction: ``evolve.cycle.recorded`` on the daemon's
   stream (numbered, expecting the stream's version, so two daemons never record one
   number twice) and ``rsi.task.created`` (pending) or ``rsi.task.rejected`` on each
   change's stream.

``run`` starts the implementation agent on pending changes, drives their tasks (at most
``max_in_flight``; each until it settles), lets the tracker record the outcomes, merges
what auto-merge allows, records ``evolve.cycle.completed`` once a cycle's changes have
all settled, and starts a cycle every ``interval``. A restarted daemon reads all of this
back: it drives the changes still in flight, and it waits out the interval since the
last recorded cycle rather than recording another at once (with ``once``, it finishes the
last unfinished cycle instead of starting one). A change that fails is recorded failed
with its log; the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forgeline.config import Settings
from forgeline.core.events import (
    EVOLVE_STREAM,
    ChangeOutcome,
    CTRMUpdate,
    CycleCompleted,
    CycleRecorded,
    EventData,
    NewEvent,
    RSITask,
    RSITaskCreated,
    RSITaskRejected,
    ctrm_stream,
    utcnow,
)
from forgeline.core.evolution import Signal, change_id, cycle_history, plan_cycle, shared_budget
from forgeline.core.rsi import IN_FLIGHT, SETTLED, RSIChange
from forgeline.core.task import settled
from forgeline.errors import ConcurrencyError, DuplicateEventError, ForgelineError, WorkspaceError
from forgeline.evolve.agent import ImplementationAgent
from forgeline.evolve.config import EvolveConfig
from forgeline.evolve.merge import ApprovedBy, MergeError, approve_change
from forgeline.evolve.reads import load_change, load_changes
from forgeline.evolve.scan import Scanner
from forgeline.evolve.tracker import ChangeTracker
from forgeline.runtime import Runtime
from forgeline.store.base import AppendRequest

log = logging.getLogger(__name__)

ACTOR = "evolution-daemon"
_IDS = uuid.UUID("2b0e7f4a-4c1e-4f0b-8a43-9d7f1b2c3e5d")


class EvolutionDaemon:
    """One repository's evolution loop on an open runtime."""

    attempts = 8
    """How often a cycle is numbered again when another daemon recorded one first."""

    def __init__(
        self,
        runtime: Runtime,
        repository: str | Path,
        *,
        config: EvolveConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = runtime.workspaces.name_of(repository)
        self.repository = runtime.workspaces.repository(self.name)
        self.config = config or runtime.settings.evolve
        self.clock = clock
        self.report = report or log.info
        settings: Settings = runtime.settings.model_copy(update={"evolve": self.config})
        self.scanner = Scanner(self.repository.path, settings, runtime.spawner)
        self.tracker = ChangeTracker(
            runtime, scanner=lambda path: Scanner(path, settings, runtime.spawner), clock=clock
        )
        self.agent = ImplementationAgent(runtime, self.tracker)

    # ------------------------------------------------------------------ a cycle

    async def branch(self) -> str:
        """The main branch: ``[evolve] branch``, else the one checked out."""
        if self.config.branch:
            return self.config.branch
        branch = await self.repository.current_branch()
        if branch == "HEAD":
            raise WorkspaceError(
                f"{self.repository.path} has no branch checked out (a detached HEAD): check "
                "out the main branch, or name it in [evolve] branch"
            )
        return branch

    async def cycle(self) -> CycleRecorded:
        """Scan, rank, choose and record one cycle with its RSI tasks; nothing runs yet."""
        await self.tracker.catch_up()
        store = self.runtime.store
        branch = await self.branch()
        commit = (await self.repository.git("rev-parse", f"refs/heads/{branch}")).strip()
        scan = await self.scanner.scan(commit)
        self.tracker.remember(self.name, scan)
        for _ in range(self.attempts):
            changes = await load_changes(store, repository=self.name)
            now = self.clock()
            plan = plan_cycle(scan.signals, changes, self.config.limits(), now)
            history = cycle_history(self.name, await store.read_stream(EVOLVE_STREAM))
            number = history.next_cycle
            budget = shared_budget(
                self.config.budget, len(plan.chosen), self.runtime.settings.budget
            )
            requests: list[AppendRequest] = []
            proposed: list[str] = []
            rejected: list[str] = []
            for index, signal in enumerate(plan.chosen, 1):
                cid = change_id(number, index)
                data = self._task(cid, signal, number, branch, commit, budget)
                (proposed if isinstance(data, RSITaskCreated) else rejected).append(cid)
                requests.append(
                    AppendRequest(ctrm_stream(cid), [self._event(ctrm_stream(cid), data, now)], 0)
                )
            recorded = CycleRecorded(
                cycle=number,
                repository=self.name,
                branch=branch,
                commit=commit,
                counts=scan.counts,
                signals=tuple(s.ref() for s in scan.signals[:200]),
                proposed=tuple(proposed),
                rejected=tuple(rejected),
                skipped=plan.skipped[:200],
                notes=scan.notes,
                budget=budget,
            )
            head = AppendRequest(
                EVOLVE_STREAM, [self._event(EVOLVE_STREAM, recorded, now)], history.version
            )
            try:
                await store.append_batch([head, *requests])
            except ConcurrencyError:
                continue  # another daemon recorded a cycle meanwhile: number this one again
            self.report(_describe(recorded))
            return recorded
        raise ConcurrencyError(EVOLVE_STREAM, -1, -1)

    def _task(
        self, cid: str, signal: Signal, cycle: int, branch: str, commit: str, budget: Any
    ) -> EventData:
        raw: dict[str, Any] = {
            "change_id": cid,
            "target_module": signal.target_module,
            "priority": signal.priority,
            "patch_definition": {
                "kind": signal.kind,
                "summary": signal.summary,
                "request": signal.request,
                "locations": list(signal.locations),
            },
            **signal.given,
        }
        try:
            task = RSITask.model_validate(raw)
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            return RSITaskRejected(
                change_id=cid,
                cycle=cycle,
                repository=self.name,
                fingerprint=signal.fingerprint,
                raw=json.dumps(raw)[:4000],
                reason=f"invalid RSITask: {reason}",
            )
        return RSITaskCreated(
            task=task,
            cycle=cycle,
            repository=self.name,
            branch=branch,
            base_commit=commit,
            fingerprint=signal.fingerprint,
            budget=budget,
        )

    def _event(
        self, stream: str, data: EventData, at: datetime, event_id: str | None = None
    ) -> NewEvent:
        extra = {} if event_id is None else {"id": event_id}
        return NewEvent(
            stream_id=stream,
            data=data,
            correlation_id=self.name,
            actor=ACTOR,
            created_at=at,
            **extra,
        )

    # ------------------------------------------------------------------ the loop

    async def run(
        self,
        *,
        once: bool = False,
        interval: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run cycles every ``interval`` seconds (default ``[evolve] interval``) until
        ``stop`` is set, or (``once``) until one cycle's changes have all settled. The
        work in flight when ``stop`` is set is finished and recorded first."""
        stop = stop or asyncio.Event()
        every = self.config.interval if interval is None else interval
        drives: dict[str, asyncio.Task[None]] = {}
        target: int | None = None
        announced: datetime | None = None
        retry_at: datetime | None = None
        if once:
            history = cycle_history(self.name, await self.runtime.store.read_stream(EVOLVE_STREAM))
            if history.unfinished:
                target = history.unfinished[-1].cycle
                self.report(f"cycle {target} was recorded before: finishing it")
        try:
            while not stop.is_set():
                await self._settle()
                await self._launch(drives, stop)
                timeout: float | None = None
                if once:
                    if target is None:
                        target = (await self.cycle()).cycle
                        continue
                    if not drives:
                        await self._settle()
                        return
                else:
                    history = cycle_history(
                        self.name, await self.runtime.store.read_stream(EVOLVE_STREAM)
                    )
                    due = (
                        history.last_at + timedelta(seconds=every)
                        if history.last_at
                        else self.clock()
                    )
                    due = max(due, retry_at) if retry_at else due
                    timeout = (due - self.clock()).total_seconds()
                    if timeout <= 0:
                        if not await self._cycle_or_note():  # try again an interval later
                            retry_at = self.clock() + timedelta(seconds=every)
                        continue
                    if due != announced:
                        announced = due
                        self.report(f"next cycle at {due:%Y-%m-%d %H:%M:%S %Z}")
                await _first(set(drives.values()), stop, timeout)
        finally:
            if drives:
                await asyncio.gather(*drives.values(), return_exceptions=True)
                await self._settle()

    async def _cycle_or_note(self) -> bool:
        """A cycle in the endless loop: an error is reported, and the loop goes on."""
        try:
            await self.cycle()
        except ForgelineError as exc:
            self.report(f"the cycle could not be recorded: {exc}")
            return False
        return True

    async def _launch(self, drives: dict[str, asyncio.Task[None]], stop: asyncio.Event) -> None:
        """Start pending changes and drive every change in flight that nobody drives."""
        for done in [cid for cid, task in drives.items() if task.done()]:
            drives.pop(done)
        changes = await load_changes(self.runtime.store, repository=self.name, statuses=IN_FLIGHT)
        for change in changes[: self.config.max_in_flight]:
            if change.change_id in drives:
                continue
            if change.status == "pending":
                change = await self.agent.start(change)
                if change.status != "in_progress":
                    self.report(f"{change.change_id} failed: {change.error_log}")
                    continue
                self.report(f"{change.change_id} in progress as task {change.task_id}")
            elif change.task_id and settled(await self.runtime.state(change.task_id)):
                continue  # waits for a person (or for the tracker): nothing to drive
            drives[change.change_id] = asyncio.create_task(self._drive(change, stop))

    async def _drive(self, change: RSIChange, stop: asyncio.Event) -> None:
        try:
            state = await self.agent.work(change, stop)
            if state is not None and not settled(state):
                return  # stopped: a restart drives it on
        except ForgelineError as exc:
            await self._failed(change, f"the task could not be run: {exc}")
        except Exception as exc:  # a bug must not stop the loop; the change says why
            log.exception("driving %s", change.change_id)
            await self._failed(change, f"internal error: {exc!r}")
        finally:
            moved = await self.tracker.catch_up()
            for each in moved:
                self.report(f"{each.change_id} {each.status}" + _why(each))

    async def _failed(self, change: RSIChange, reason: str) -> None:
        """Record a change the loop could not drive as failed (unless it moved on)."""
        change = await load_change(self.runtime.store, change.change_id)
        if change.status in IN_FLIGHT:
            failed = CTRMUpdate(status="failed", task_id=change.task_id, error_log=reason)
            await self.tracker.record(change, failed, cause=None)

    async def _settle(self) -> None:
        """Auto-merge what may be merged; record every cycle whose changes all settled."""
        await self.tracker.catch_up()
        store = self.runtime.store
        changes = {c.change_id: c for c in await load_changes(store, repository=self.name)}
        if self.config.auto_merge:
            for change in changes.values():
                if _mergeable(change):
                    try:
                        changes[change.change_id] = await self.merge(change, "auto-merge")
                    except MergeError as exc:
                        self.report(f"{change.change_id} not auto-merged: {exc}")
        history = cycle_history(self.name, await store.read_stream(EVOLVE_STREAM))
        for cycle in history.unfinished:
            ids = (*cycle.proposed, *cycle.rejected)
            if not all(cid in changes and changes[cid].status in SETTLED for cid in ids):
                continue
            done = CycleCompleted(
                cycle=cycle.cycle,
                repository=self.name,
                outcomes=tuple(ChangeOutcome(change_id=c, status=changes[c].status) for c in ids),
            )
            event_id = uuid.uuid5(_IDS, f"{self.name}:{cycle.cycle}:completed").hex
            with contextlib.suppress(DuplicateEventError):
                await store.append(
                    EVOLVE_STREAM, [self._event(EVOLVE_STREAM, done, self.clock(), event_id)]
                )
                self.report(f"cycle {cycle.cycle} complete")

    async def merge(self, change: RSIChange, approved_by: ApprovedBy) -> RSIChange:
        """Merge a completed change into its main branch and record it."""
        return await approve_change(
            self.runtime.store, self.repository, change, approved_by, at=self.clock()
        )


def _mergeable(change: RSIChange) -> bool:
    """Auto-merge's rule: completed (so its tests and review passed), no test that passed
    before it fails after it, and no test failing on its commit."""
    return (
        change.status == "completed"
        and not change.regressions
        and change.after is not None
        and change.after.failing_tests == 0
    )


def _why(change: RSIChange) -> str:
    return f": {change.error_log.splitlines()[0]}" if change.error_log else ""


def _describe(cycle: CycleRecorded) -> str:
    counts = cycle.counts
    found = (
        f"{counts.failing_tests} failing test(s), {counts.lint_findings} lint finding(s), "
        f"{counts.type_errors} type error(s), {counts.todos} TODO(s), "
        f"{counts.uncovered_functions} uncovered function(s), {counts.goals} goal(s)"
    )
    made = ", ".join(cycle.proposed) or "no change"
    rejected = f"; rejected {', '.join(cycle.rejected)}" if cycle.rejected else ""
    return f"cycle {cycle.cycle} on {cycle.branch} {cycle.commit[:10]}: {found}; {made}{rejected}"


async def _first(
    tasks: set[asyncio.Task[None]], stop: asyncio.Event, timeout: float | None
) -> None:
    """Wait until a task is done, ``stop`` is set or ``timeout`` passes."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({*tasks, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
