"""Work parked in the dead-letter queue, as the store records it, and putting it back.

The store is the record (stream ``deadletters``: ``work.dead_lettered`` when a worker
parks a message after its last try, ``work.retried`` when ``forgeline retry`` queues it
again); the broker's ``forgeline.dead`` queue holds the same messages for whoever looks
at the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from forgeline.core.events import DEAD_LETTERS_STREAM, NewEvent, WorkRetried
from forgeline.core.reactions import ROLES, Role
from forgeline.errors import InvalidRequestError
from forgeline.store.base import EventStore
from forgeline.transport.broker import Broker, Work


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    role: str
    event_id: str
    event_type: str
    position: int
    attempts: int
    error: str
    worker: str
    at: datetime

    @property
    def work(self) -> Work:
        role: Role = next(r for r in ROLES if r == self.role)
        return Work(role, self.task_id, self.event_id, self.position, self.event_type)


async def dead_letters(store: EventStore, task_id: str | None = None) -> list[DeadLetter]:
    """The work parked and not retried since, oldest first (one task's, or all)."""
    parked: dict[tuple[str, str], DeadLetter] = {}
    for event in await store.read_stream(DEAD_LETTERS_STREAM):
        data = event.data
        if data.type == "work.dead_lettered":
            parked[(data.event_id, data.role)] = DeadLetter(
                data.task_id,
                data.role,
                data.event_id,
                data.event_type,
                data.position,
                data.attempts,
                data.error,
                data.worker,
                event.created_at,
            )
        elif data.type == "work.retried":
            parked.pop((data.event_id, data.role), None)
    return [d for d in parked.values() if task_id is None or d.task_id == task_id]


async def retry(store: EventStore, broker: Broker, task_id: str, *, actor: str) -> int:
    """Queue the task's parked work again (fresh tries); how many messages that was."""
    letters = await dead_letters(store, task_id)
    if not letters:
        raise InvalidRequestError(
            f"task {task_id} has nothing in the dead-letter queue: "
            "`forgeline tasks --failed` lists what has"
        )
    await broker.take_dead(task_id)
    await broker.publish(letter.work for letter in letters)  # queued before it is recorded
    retried = [
        NewEvent(
            stream_id=DEAD_LETTERS_STREAM,
            data=WorkRetried(task_id=task_id, role=letter.role, event_id=letter.event_id),
            correlation_id=task_id,
            actor=actor,
        )
        for letter in letters
    ]
    await store.append(DEAD_LETTERS_STREAM, retried)
    return len(letters)
