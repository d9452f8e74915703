"""What happens once a task reaches an outcome: its pull request is opened and the
people who asked to be told are e-mailed.

Outcomes are ``completed``, ``failed``, ``needs_clarification`` (a question for a person)
and ``awaiting_approval`` (paused by its budget): the event that moves a task into one
of these statuses. A second question while one waits, or a second paused item, is the
same outcome and tells nobody again. For each outcome, in this order:

- ``completed`` with ``[github] open_pr``: push the task's branch and open its pull
  request (``GitHub.deliver``: plan, tests, review and usage in its body), linked to the
  issue the request was read from (``forgeline run --from-issue``, ``issue_of``);
- with ``[email] host``: e-mail the addresses ``[email.notify]`` lists for the outcome
  (``Mailer.notify``), from the templates, with the PDF report of the task as it was at
  that event and the pull request's address.

A failing call is logged and recorded (its ``tool.*`` event says why); it does not touch
the task. The calls' ``tool.*`` events go to the task's stream, the first caused by the
outcome event and each next by the one before (actor ``delivery``), in one append with
the checkpoint ``delivery:<task>``.

Exactly once per outcome: an outcome with a recorded delivery (an event of ``delivery``
caused by it) is skipped, and the checkpoint skips the events already looked at, so a
restart or a second run delivers nothing twice. A crash in the moment between an e-mail
leaving and its record being written sends it again on the next run. A task is watched
from the first time the runtime drives it with delivery configured (``watch``), so
outcomes from before delivery was configured are not announced.

Who runs it (``open_runtime``, when either is configured): a task-scoped execution
after each ``run_until_settled`` on that task (a task settles exactly at its outcomes),
and a shared execution (``follow`` from ``start_position``) as a subscriber of the whole
log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from forgeline.config import Settings
from forgeline.core.events import Event, task_id_of, task_stream
from forgeline.core.task import TaskState, evolve
from forgeline.errors import DuplicateEventError, ForgelineError
from forgeline.observability.logs import bind_task
from forgeline.pipeline.base import Services
from forgeline.store.base import EventStore
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import Outcome
from forgeline.tools.github import GitHub, issue_of
from forgeline.tools.mail import Mailer, outcome_of
from forgeline.tools.report.model import load_report

__all__ = ["ACTOR", "Delivery"]

log = logging.getLogger(__name__)

ACTOR = "delivery"
SUBSCRIBER = "delivery"
"""The checkpoint of the shared subscriber; a task's own is ``delivery:<task id>``."""

#: The event types that may move a task into an outcome.
OUTCOME_TYPES = frozenset(
    {"task.completed", "task.failed", "clarification.requested", "task.awaiting_approval"}
)


class Delivery:
    """Pull requests and e-mails for the tasks' outcomes (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @staticmethod
    def wanted(settings: Settings) -> bool:
        """Whether there is anything to deliver with ``settings``."""
        return settings.github.open_pr or settings.email.host is not None

    @property
    def store(self) -> EventStore:
        return self.services.store

    # ------------------------------------------------------------------ per task

    async def watch(self, task_id: str, since: int | None = None) -> None:
        """Deliver the task's outcomes recorded after position ``since`` (default: its
        latest event), unless it is watched already."""
        name = _checkpoint(task_id)
        if await self.store.get_checkpoint(name):
            return
        if since is None:
            events = await self.store.read_stream(task_stream(task_id))
            since = events[-1].position if events else 0
        if since:
            await self.store.save_checkpoint(name, since)

    async def catch_up(self, task_id: str) -> None:
        """Deliver the task's outcomes recorded after its checkpoint."""
        name = _checkpoint(task_id)
        after = await self.store.get_checkpoint(name)
        events = await self.store.read_stream(task_stream(task_id))
        if not after or not events or events[-1].position <= after:
            return  # not watched, or nothing new
        state = TaskState(task_id=task_id)
        for event in events:
            before, state = state, evolve(state, event)
            if event.position <= after or state.status == before.status:
                continue
            outcome = outcome_of(state)
            if outcome is not None and not _delivered(event, events):
                await self._deliver(event, outcome, events, (name, event.position))
        await self.store.save_checkpoint(name, events[-1].position)

    async def _deliver(
        self, event: Event, outcome: Outcome, events: list[Event], checkpoint: tuple[str, int]
    ) -> None:
        task_id = event.correlation_id
        settings = self.services.settings
        calls = ToolCalls()
        with (
            bind_task(task_id, stage=ACTOR),
            self.services.tracing.stage(task_id, ACTOR, outcome=outcome) as span,
        ):
            report = await load_report(
                self.store, task_id, self.services.workspaces, until_version=event.version
            )
            pull_request: str | None = None
            if outcome == "completed" and settings.github.open_pr:
                try:
                    opened = await GitHub(settings.github, recorder=calls).deliver(
                        report, issue=issue_of(events)
                    )
                    pull_request = opened.url
                except ForgelineError as exc:
                    log.warning("no pull request for task %s: %s", task_id, exc)
            mailer = Mailer(settings.email, recorder=calls)
            if mailer.enabled:
                try:
                    await mailer.notify(report, outcome=outcome, pull_request=pull_request)
                except ForgelineError as exc:
                    log.warning("no e-mail for task %s %s: %s", task_id, outcome, exc)
            span.set_attribute("forgeline.outcome", f"{len(calls.records)} call(s)")
        records = calls.events(
            stream_id=event.stream_id,
            correlation_id=task_id,
            causation_id=event.id,
            actor=ACTOR,
            created_at=self.services.clock(),
        )
        try:
            await self.store.append(event.stream_id, records, checkpoint=checkpoint)
        except DuplicateEventError:
            log.warning("task %s: %s was delivered by another run as well", task_id, outcome)

    # ------------------------------------------------------------- every task

    async def start_position(self) -> int:
        """Where ``follow`` starts: after its checkpoint, or the first time at the log's
        end (saved, so a restart goes on from there)."""
        after = await self.store.get_checkpoint(SUBSCRIBER)
        if not after:
            after = await _last_position(self.store)
            await self.store.save_checkpoint(SUBSCRIBER, after)
        return after

    async def follow(self, after: int, stop: asyncio.Event) -> None:
        """Deliver every task's outcomes recorded after position ``after`` as they are
        recorded, until ``stop`` is set (a shared execution)."""
        async for event in self.store.follow(after=after, stop=stop):
            task_id = task_id_of(event.stream_id)
            if task_id is None:
                continue
            if event.type == "task.initiated":
                await self.watch(task_id, event.position)
            elif event.type in OUTCOME_TYPES:
                await self.watch(task_id, event.position - 1)  # begun before the subscriber
                await self.catch_up(task_id)
                await self.store.save_checkpoint(SUBSCRIBER, event.position)


def _checkpoint(task_id: str) -> str:
    return f"{SUBSCRIBER}:{task_id}"


def _delivered(outcome: Event, events: list[Event]) -> bool:
    return any(e.causation_id == outcome.id and e.actor == ACTOR for e in events)


async def _last_position(store: EventStore) -> int:
    """The log's last position (0 for an empty log): the least ``p`` with no event after
    it, found with a few one-row reads."""
    low, high = 0, 1
    while await store.read_all(after=high, limit=1):
        low, high = high, high * 2
    while high - low > 1:  # an event after low, none after high
        middle = (low + high) // 2
        if await store.read_all(after=middle, limit=1):
            low = middle
        else:
            high = middle
    return high if await store.read_all(after=low, limit=1) else low


async def stop_following(task: asyncio.Task[None] | None, stop: asyncio.Event) -> None:
    """End a ``follow`` started as ``task``."""
    if task is None:
        return
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
