"""``forgeline worker``: take messages from the broker, run the stage, record, then ack.

A worker consumes the queues of its roles (the orchestrator and the stages it was given)
with at most ``concurrency`` unacknowledged messages over all of them. For each message
it reads the event from the store (the message only points at it), has
``Pipeline.handle`` act on it (fold the task, run the stage or decide, record the output
with the causation id), and only then acknowledges it. So:

- with ``[transport] git_remote`` (no shared filesystem) the worker first fetches the
  task's branch and puts its worktree here at the last recorded commit
  (``remote.py``), and each commit is pushed before it is recorded;
- a worker that dies mid-stage leaves its message unacknowledged: the broker gives it to
  another worker, which first puts the worktree back at the task's last recorded commit
  (``Pipeline.recover``, as ``resume`` does; under the task's activity lock, so never
  under a stage another process still runs), then does the work; a result recorded
  before the death is found by the causation guard and nothing runs twice;
- a handling that raises (a transient failure or a bug: ``failures.escalates``) is
  acknowledged and queued again after an exponential backoff with jitter, through the
  retry queue of its attempt; after ``max_attempts`` tries it is recorded in the store
  (``work.dead_lettered``) and parked in the dead-letter queue until ``forgeline retry``;
- a task cancelled while one of its stages runs here is interrupted within about
  ``cancel_check`` seconds (``Pipeline.interrupt``: the sandboxed processes are killed);
- a lost broker connection is re-established with backoff; the stages in flight go on
  and record their results (the store is the truth), and their messages, redelivered by
  the broker, find the work done. A message given out again while its first run still
  goes on waits for it (``activity.running``), then finds the work done too; a
  worktree at a commit no event names (a dead run's, whose message came back without
  the broker's redelivered mark) is put back before the stage works there.

Alongside, every ``heartbeat`` seconds the worker records ``worker.heartbeat`` (what it
runs, whether it is the relay) in the ``workers`` stream, and unless told otherwise it
stands by as the outbox relay (``relay.py``; the relay also gives waiting tasks agents as
agents free up). SIGTERM/SIGINT (``stop``) stop the intake;
the messages in flight are finished, recorded and acknowledged first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from forgeline.core.events import (
    DEAD_LETTERS_STREAM,
    WORKERS_STREAM,
    Event,
    NewEvent,
    RunningWork,
    WorkDeadLettered,
    WorkerHeartbeat,
    WorkerStopped,
    task_stream,
)
from forgeline.core.reactions import ORCHESTRATOR, Role
from forgeline.core.task import TaskState
from forgeline.errors import ForgelineError, TaskNotFoundError, WorkspaceError
from forgeline.pipeline.execution import serving_assignments, wait_first
from forgeline.pipeline.runner import StageInterrupted
from forgeline.runtime import Runtime
from forgeline.transport.activity import activity, running
from forgeline.transport.broker import Broker, BrokerError, Work
from forgeline.transport.failures import describe, escalates
from forgeline.transport.lease import relay_lease
from forgeline.transport.relay import Relay
from forgeline.transport.remote import RemoteWorkspaces

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    work: Work
    since: datetime
    task: asyncio.Task[object] | None = field(default=None, repr=False)


class BrokerWorker:
    cancel_check = 0.5
    """Seconds between looks at whether a task running here was cancelled."""
    reconnect_max = 5.0
    """The longest wait between tries to reach the broker again."""

    def __init__(
        self,
        runtime: Runtime,
        roles: Sequence[Role],
        *,
        concurrency: int | None = None,
        relay: bool | None = None,
        name: str | None = None,
    ) -> None:
        settings = runtime.settings
        if settings.broker is None:
            raise BrokerError("no broker configured: give --broker or set FORGELINE_BROKER")
        self.runtime = runtime
        self.pipeline = runtime.pipeline
        self.store = runtime.store
        self.config = settings.transport
        self.roles: tuple[Role, ...] = tuple(dict.fromkeys((ORCHESTRATOR, *roles)))
        self.concurrency = concurrency or self.config.concurrency
        self.relay_enabled = self.config.relay if relay is None else relay
        self.id = name or f"{socket.gethostname()}:{os.getpid()}"
        self.broker = Broker(settings.broker, heartbeat=self.config.heartbeat)
        self.relay: Relay | None = None
        self.handled = 0
        """Messages handled and acknowledged."""
        self._in_flight: dict[int, _InFlight] = {}
        self._keys = count()
        self._stop = asyncio.Event()
        # On this worker a stage raises transient failures and bugs, to be retried.
        runtime.services.escalates = escalates
        self.remote: RemoteWorkspaces | None = None
        if self.config.git_remote is not None:  # no shared filesystem: clone, push
            self.remote = RemoteWorkspaces(runtime.workspaces.root, self.config.git_remote)
            runtime.services.workspaces = self.remote

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish the messages in flight."""
        self._stop = stop
        helpers = [
            asyncio.create_task(self._heartbeats(stop), name="forgeline-heartbeat"),
            asyncio.create_task(self._watch_cancellations(stop), name="forgeline-cancels"),
        ]
        if self.relay_enabled:
            helpers.append(asyncio.create_task(self._stand_by(stop), name="forgeline-relay"))
        try:
            await self._serve(stop)
        finally:
            stop.set()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(ForgelineError):
                await self._record(WorkerStopped(worker=self.id, reason="stopped"))

    async def _serve(self, stop: asyncio.Event) -> None:
        wait = 0.2
        while not stop.is_set():
            try:
                await self.broker.connect()
                await self.broker.consume(self.roles, self.concurrency, self._on_message)
            except BrokerError as exc:
                log.warning("%s; trying again in %.1f s", exc, wait)
            else:
                log.info("worker %s takes %s", self.id, ", ".join(self.roles))
                wait = 0.2
                await wait_first(self.broker.closed(), stop.wait())
                if not stop.is_set():
                    log.warning("lost the broker at %s; reconnecting", self.broker.location)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait * (0.5 + random.random() / 2))
                wait = min(wait * 2, self.reconnect_max)
        await self.broker.stop_consuming()
        running = [f.task for f in self._in_flight.values() if f.task is not None]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self.broker.close()

    # ------------------------------------------------------------------ messages

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Start handling ``message`` in a task of the worker's own: the client library
        cancels its delivery tasks when the connection drops, and a stage in flight
        should go on and record its result (the store is reachable)."""
        try:
            work = Work.from_body(message.body)
        except BrokerError as exc:
            log.error("%s: dropped", exc)
            await _settle(message.reject(requeue=False))
            return
        key = next(self._keys)
        flight = _InFlight(work, self.pipeline.services.clock())
        self._in_flight[key] = flight
        flight.task = asyncio.create_task(self._process(key, work, message))

    async def _process(self, key: int, work: Work, message: AbstractIncomingMessage) -> None:
        try:
            await self._handle(work, redelivered=bool(message.redelivered))
        except StageInterrupted as exc:
            log.info("%s: %s", work.task_id, exc)  # cancelled: nothing is left to do
        except Exception as exc:
            try:
                await self._failed(work, exc)
            except ForgelineError as again:
                log.error(
                    "cannot retry %s for %s (%s): the broker redelivers it",
                    work.key,
                    work.task_id,
                    again,
                )
                return  # unacknowledged: the broker gives it out again
        finally:
            self._in_flight.pop(key, None)
        if await _settle(message.ack()):
            self.handled += 1

    async def _handle(self, work: Work, *, redelivered: bool) -> None:
        event = await self._event(work)
        if event is None:
            return
        state = await self.pipeline.state(work.task_id)
        if work.role == ORCHESTRATOR or state.terminal:
            await self.pipeline.handle(event, work.role)  # decides; touches no worktree
            return
        worktree = self.runtime.workspaces.worktree(state).path
        if self.remote is not None:
            # The worktree here may be stale or absent: put it at the recorded commit.
            async with activity(worktree, exclusive=True):
                await self.remote.sync(state)
        elif not worktree.exists():
            raise WorkspaceError(
                f"the worktree {worktree} of task {work.task_id} is not on this machine: "
                "run workers on the filesystem that holds the workspaces root, or set "
                "[transport] git_remote"
            )
        elif redelivered or work.attempt > 0 or work.recover or await self._strayed(state):
            # Whoever had it before died or failed mid-way (a message given out again
            # after a broker restart may not say so, but its commit is there): put back
            # what it left.
            async with activity(worktree, exclusive=True):
                await self.pipeline.recover(work.task_id)
        async with (
            running(worktree, f"{work.event_id}-{work.role}"),
            activity(worktree, exclusive=False),
        ):
            await self.pipeline.handle(event, work.role)

    async def _strayed(self, state: TaskState) -> bool:
        """Whether the task's worktree is at a commit the store does not record (a dead
        run's, or one still in flight: the caller then waits for it under the exclusive
        activity lock)."""
        if state.terminal or not state.head:
            return False
        worktree = self.runtime.workspaces.worktree(state)
        try:
            return await worktree.head() != state.head
        except WorkspaceError:
            return False  # no worktree (yet): nothing strayed

    async def _event(self, work: Work) -> Event | None:
        """The recorded event the message points at (None if the task is gone)."""
        [*found] = await self.store.read_all(after=work.position - 1, limit=1)
        if found and found[0].id == work.event_id:
            return found[0]
        for event in await self.store.read_stream(task_stream(work.task_id)):
            if event.id == work.event_id:
                return event
        log.warning("no event %s in task %s: nothing to do", work.event_id, work.task_id)
        return None

    async def _failed(self, work: Work, exc: Exception) -> None:
        """Queue ``work`` again after a backoff, or after its last try, park it."""
        error = describe(exc)
        again = work.retried(error)
        if again.attempt < self.config.max_attempts:
            delay = self.backoff(again.attempt)
            log.warning(
                "%s on task %s failed (try %d of %d), again in %.1f s: %s",
                work.role,
                work.task_id,
                again.attempt,
                self.config.max_attempts,
                delay,
                error,
            )
            await self.broker.publish_later(again, delay)
            return
        log.error(
            "%s on task %s failed %d times; parked in the dead-letter queue: %s",
            work.role,
            work.task_id,
            again.attempt,
            error,
        )
        letter = WorkDeadLettered(
            task_id=work.task_id,
            role=work.role,
            event_id=work.event_id,
            event_type=work.event_type,
            position=work.position,
            attempts=again.attempt,
            error=error,
            worker=self.id,
        )
        await self._record(letter, stream=DEAD_LETTERS_STREAM, correlation=work.task_id)
        await self.broker.dead_letter(again)

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: doubling from ``backoff``, at most
        ``backoff_max``, less up to ``jitter`` of it at random."""
        config = self.config
        wait = min(config.backoff * 2 ** (attempt - 1), config.backoff_max)
        return float(wait * (1 - config.jitter * random.random()))

    # ------------------------------------------------------------------ alongside

    async def _stand_by(self, stop: asyncio.Event) -> None:
        """Be the relay whenever this worker holds the lease, and meanwhile give waiting
        tasks agents as agents free up (``Assignments.serve``: one process of the cluster
        does it, whoever submitted the tasks)."""
        url = self.runtime.settings.store
        assert url is not None
        while not stop.is_set():
            try:
                async with relay_lease(url, stop) as lease:
                    if lease is not None:
                        async with (
                            Broker(self.broker.url, heartbeat=self.config.heartbeat) as b,
                            serving_assignments(self.pipeline),
                        ):
                            self.relay = Relay(self.store, b)
                            await self._record_heartbeat()
                            await self.relay.run(lease, stop)
            except ForgelineError as exc:
                log.warning("relay stopped: %s", exc)
            finally:
                self.relay = None
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._record_heartbeat()
            except ForgelineError as exc:
                log.warning("cannot record a heartbeat: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.heartbeat)

    async def _record_heartbeat(self) -> None:
        running = tuple(
            RunningWork(
                task_id=f.work.task_id,
                role=f.work.role,
                event_type=f.work.event_type,
                since=f.since,
            )
            for f in list(self._in_flight.values())
        )
        beat = WorkerHeartbeat(
            worker=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            roles=self.roles,
            concurrency=self.concurrency,
            interval=self.config.heartbeat,
            running=running,
            relay=self.relay is not None,
        )
        await self._record(beat)

    async def _record(
        self,
        data: WorkerHeartbeat | WorkerStopped | WorkDeadLettered,
        *,
        stream: str = WORKERS_STREAM,
        correlation: str | None = None,
    ) -> None:
        event = NewEvent(
            stream_id=stream,
            data=data,
            correlation_id=correlation or self.id,
            actor=f"worker:{self.id}",
            created_at=self.pipeline.services.clock(),
        )
        await self.store.append(stream, [event])

    async def _watch_cancellations(self, stop: asyncio.Event) -> None:
        """Interrupt the stages of tasks cancelled (by anyone) while they run here."""
        while not stop.is_set():
            mark = self.store.commit_count
            for task_id in {f.work.task_id for f in list(self._in_flight.values())}:
                try:
                    state = await self.pipeline.state(task_id)
                except (TaskNotFoundError, ForgelineError):
                    continue
                if state.status == "cancelled":
                    stopped = await self.pipeline.interrupt(task_id)
                    if stopped:
                        log.info("task %s was cancelled: stopped %d stage run(s)", task_id, stopped)
            await wait_first(self.store.wait_for_append(mark), stop.wait())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cancel_check)


async def _settle(acknowledgement: Awaitable[object]) -> bool:
    """Acknowledge (or reject) a message; on a lost connection (False) the broker gives it
    out again, and whoever takes it finds the work recorded."""
    try:
        await acknowledgement
    except CONNECTION_EXCEPTIONS as exc:
        log.info("could not acknowledge a message (%s): it will be redelivered", exc)
        return False
    return True
