"""``BrokerExecution``: the runtime's execution when a broker is configured.

Work is done by ``forgeline worker`` processes (on this machine or others); the
submitting process only records and waits. ``start`` connects to the broker (declaring
the queues, so a broker that cannot be reached is an error at once), ``drive`` waits
until the task is settled, woken by the store's pushed commits (with ``[transport]
git_remote``, it then fetches the workers' commits into this machine's worktree), and
stops with a clear error when the task's work was parked in the dead-letter queue;
``close`` disconnects. The outbox relay runs in the workers, so a submitter needs nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from forgeline.config import Settings
from forgeline.core.events import task_stream
from forgeline.core.task import TaskState, settled
from forgeline.errors import ConfigError, StageError, WorkspaceError
from forgeline.pipeline.execution import Execution, wait_first
from forgeline.pipeline.runner import Pipeline
from forgeline.transport.broker import Broker, check_url
from forgeline.transport.deadletters import dead_letters
from forgeline.transport.relay import works_of
from forgeline.transport.remote import RemoteWorkspaces

log = logging.getLogger(__name__)

POSTGRES = ("postgresql://", "postgres://")


def check_settings(settings: Settings) -> None:
    """A broker URL that is one, and a Postgres store (every worker shares it)."""
    if settings.broker is None:
        raise ConfigError("no broker configured: set broker (FORGELINE_BROKER or --broker)")
    check_url(settings.broker)
    if settings.store is None or not settings.store.startswith(POSTGRES):
        raise ConfigError(
            "distributed mode (a broker) needs a Postgres store that every worker shares: "
            "set store = postgresql://... (FORGELINE_STORE or --store)"
        )


class BrokerExecution(Execution):
    owns_task = False

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(pipeline)
        settings = pipeline.services.settings
        check_settings(settings)
        assert settings.broker is not None
        self.broker = Broker(settings.broker, heartbeat=settings.transport.heartbeat)

    async def start(self) -> None:
        await self.broker.connect()

    async def close(self) -> None:
        await self.broker.close()

    async def resume(self, task_id: str) -> int:
        """Queue again every event of the task whose effect was never recorded (a stage
        that crashed, work lost with a broker), each to be handled after the worktree is
        put back at the last recorded commit; how many messages that was. Work already
        recorded is found by the causation guard."""
        events = await self.pipeline.store.read_stream(task_stream(task_id))
        works = [replace(work, recover=True) for work in works_of(events)]
        await self.broker.publish(works)
        return len(works)

    async def _fetch(self, state: TaskState) -> None:
        """With a git remote, bring the workers' commits into this machine's worktree (the
        summary shows them); a remote that does not answer leaves it as it was."""
        git_remote = self.pipeline.services.settings.transport.git_remote
        if git_remote is None or state.checkout is not None:
            return
        workspaces = RemoteWorkspaces(self.pipeline.services.workspaces.root, git_remote)
        try:
            await workspaces.sync(state)
        except WorkspaceError as exc:
            log.warning("task %s's commits were not fetched: %s", state.task_id, exc)

    async def drive(self, task_id: str, stop: asyncio.Event) -> None:
        store = self.pipeline.store
        while not stop.is_set():
            mark = store.commit_count
            state = await self.pipeline.state(task_id)
            if settled(state):
                await self._fetch(state)
                return
            parked = await dead_letters(store, task_id)
            if parked:
                letter = parked[-1]
                raise StageError(
                    f"the {letter.role}'s work on task {task_id} failed {letter.attempts} "
                    f"times and is parked in the dead-letter queue: {letter.error}. Fix the "
                    f"cause, then `forgeline retry {task_id}`"
                )
            await wait_first(store.wait_for_append(mark), stop.wait())
