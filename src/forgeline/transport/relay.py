"""The outbox relay: recorded events to the queues of the roles that act on them.

The store is the outbox. The relay that holds the lease (``lease.py``) reads the log
from its checkpoint (``transport:relay`` in the store's checkpoints), publishes each
event that some role acts on (``broker.routes``, from the reaction table) to that role's
queue, waits for the broker's confirms, and only then moves its checkpoint on. So a
relay that dies or loses the broker republishes at most what it had not recorded as
published (workers treat a second copy as done, by the causation guard), and never skips
an event: on Postgres, positions commit in order. New commits wake it at once
(LISTEN/NOTIFY); the poll is a safety net.

An event whose effect by a role is already on the same page (the orchestrator's
reaction recorded with a stage's result) is not published to that role at all, as the
embedded workers skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from forgeline.core.events import Event, task_id_of
from forgeline.pipeline.execution import wait_first
from forgeline.store.base import EventStore
from forgeline.transport.broker import Broker, Work, routes
from forgeline.transport.lease import Lease

log = logging.getLogger(__name__)

CHECKPOINT = "transport:relay"


def works_of(events: Sequence[Event]) -> list[Work]:
    """The messages a page of the log makes: one per event and role acting on it, less
    the effects the page already holds."""
    done = {(e.stream_id, e.causation_id, e.actor) for e in events if e.causation_id}
    works: list[Work] = []
    for event in events:
        if task_id_of(event.stream_id) is None:
            continue
        for role in routes(event.data):
            if event.type == "budget.approved" or (event.stream_id, event.id, role) not in done:
                works.append(Work.of(event, role))
    return works


class Relay:
    page = 500
    """Events read and published at once."""
    save_interval = 0.25
    """Seconds between checkpoint saves while publishing (and when it stops)."""

    def __init__(self, store: EventStore, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self.published = 0
        self.position = 0

    async def run(self, lease: Lease, stop: asyncio.Event) -> None:
        """Publish from the checkpoint until ``stop`` is set or the lease, the broker or
        the store fails (it raises then; the caller stands by again)."""
        store = self.store
        position = saved = await store.get_checkpoint(CHECKPOINT)
        last_save = time.monotonic()
        log.info("relay active from position %d", position)
        try:
            while not stop.is_set():
                mark = store.commit_count
                events = await store.read_all(after=position, limit=self.page)
                works = works_of(events)
                if works:
                    await self.broker.publish(works)
                    self.published += len(works)
                if events:
                    position = self.position = events[-1].position
                if position > saved and time.monotonic() - last_save >= self.save_interval:
                    await lease.check()
                    await store.save_checkpoint(CHECKPOINT, position)
                    saved, last_save = position, time.monotonic()
                if len(events) < self.page:
                    await wait_first(store.wait_for_append(mark), stop.wait())
        finally:
            if position > saved:
                with contextlib.suppress(Exception):
                    await lease.check()
                    await store.save_checkpoint(CHECKPOINT, position)
