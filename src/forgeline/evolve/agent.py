"""The implementation agent of note 000: the normal pipeline, given a change to make.

For a pending change it submits one pipeline task whose request is the change's
``patch_definition.request`` (written from the signal), based on the commit the cycle
scanned, with the change's budget, and records ``ctrm.update in_progress`` naming it. The
task's id follows from the change's (``task_id_for``), so a restart that finds the task
recorded does not submit another; a worktree left by a submission that was never
recorded is removed first. Then the runtime runs the task until it settles, like
``forgeline run`` does; the tracker records what came of it.
"""

from __future__ import annotations

import asyncio
import uuid

from forgeline.core.events import CTRMUpdate
from forgeline.core.rsi import RSIChange
from forgeline.core.task import TaskState
from forgeline.errors import ForgelineError, TaskNotFoundError
from forgeline.evolve.tracker import ChangeTracker
from forgeline.runtime import Runtime

_NAMESPACE = uuid.UUID("6f1f4c1e-6a53-4bb4-9f0e-5d1a0b7e0c00")


def task_id_for(change: RSIChange) -> str:
    """The pipeline task id of a change (12 hex digits, like every task id): from its id
    and the time it was created, so changes of two stores on one repository differ."""
    created = change.created_at.isoformat() if change.created_at else ""
    return uuid.uuid5(_NAMESPACE, f"{change.change_id}@{created}").hex[:12]


class ImplementationAgent:
    def __init__(self, runtime: Runtime, tracker: ChangeTracker) -> None:
        self.runtime = runtime
        self.tracker = tracker

    async def start(self, change: RSIChange) -> RSIChange:
        """Submit the change's task (once) and record it in progress; a submission that
        fails records the change failed, with the reason."""
        if change.status != "pending" or change.task is None:
            return change
        task_id = task_id_for(change)
        try:
            await self._submit(change, task_id)
        except ForgelineError as exc:
            failed = CTRMUpdate(status="failed", error_log=f"the task was not started: {exc}")
            return await self.tracker.record(change, failed, cause=None)
        self.tracker.watch(change.change_id, task_id)
        update = CTRMUpdate(status="in_progress", task_id=task_id)
        return await self.tracker.record(change, update, cause=None)

    async def _submit(self, change: RSIChange, task_id: str) -> None:
        assert change.task is not None
        runtime = self.runtime
        try:
            await runtime.state(task_id)
            return  # submitted before a restart
        except TaskNotFoundError:
            pass
        workspaces = runtime.workspaces
        repository = workspaces.repository(change.repository)
        await repository.remove_worktree(
            f"forgeline/{task_id}", workspaces.worktree_path(change.repository, task_id)
        )
        await runtime.submit(
            change.task.patch_definition.request,
            change.repository,
            budget=change.budget,
            task_id=task_id,
            base=change.base_commit,
        )

    async def work(self, change: RSIChange, stop: asyncio.Event) -> TaskState | None:
        """Run the change's task until it settles (or ``stop``); its state, or None for a
        change that has no task."""
        if change.task_id is None:
            return None
        return await self.runtime.run_until_settled(change.task_id, stop=stop)
