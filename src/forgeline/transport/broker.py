"""RabbitMQ through aio-pika: the queues, the message a worker takes, publishing with
publisher confirms.

Topology (declared by whoever connects; declaring is idempotent):

- exchange ``forgeline`` (direct, durable) and one durable queue per role,
  ``forgeline.<role>`` (the orchestrator and the seven stages), bound by the role's name;
- ``forgeline.<role>.retry.<n>``: where a message waits before its ``n``-th retry. Each
  message carries its own expiry (the backoff); the queue dead-letters it back to the
  role's queue once it expires. One queue per try, so a short wait never queues behind a
  long one;
- ``forgeline.dead``: messages whose handling raised on every try (``forgeline retry``
  queues them again).

Queues are classic durable queues and every message is persistent, so a broker restart
loses nothing. They are classic, not quorum queues, because only classic queues honour a
prefetch per channel: a worker's ``concurrency`` bounds its work in flight over all the
queues it takes from together, and messages it cannot start yet stay with the broker for
the other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from forgeline.core.events import Event, EventData, task_id_of
from forgeline.core.reactions import ORCHESTRATOR, ROLES, Role, orchestrator_reacts, reacting_stages
from forgeline.errors import ConfigError, ForgelineError

log = logging.getLogger(__name__)

EXCHANGE = "forgeline"
DEAD_QUEUE = "forgeline.dead"


class BrokerError(ForgelineError):
    """The broker could not be reached, or refused what was asked of it."""


def queue_name(role: Role) -> str:
    return f"forgeline.{role}"


def retry_queue(role: Role, attempt: int) -> str:
    return f"forgeline.{role}.retry.{attempt}"


def queue_names(max_attempts: int) -> list[str]:
    """Every queue forgeline declares: the dead letters, each role's work queue and its
    retry queues (for work tried up to ``max_attempts`` times)."""
    names = [DEAD_QUEUE]
    for role in ROLES:
        names.append(queue_name(role))
        names += [retry_queue(role, n) for n in range(1, max_attempts + 1)]
    return names


def routes(data: EventData) -> tuple[Role, ...]:
    """The roles whose queues get a recorded event with this payload: what the reaction
    table says acts on it (``core.reactions``), the orchestrator last."""
    roles: list[Role] = [cast(Role, stage) for stage in reacting_stages(data)]
    if orchestrator_reacts(data):
        roles.append(ORCHESTRATOR)
    return tuple(roles)


@dataclass(frozen=True)
class Work:
    """A message: ``role`` is to act on the recorded event ``event_id`` (at ``position``)
    of task ``task_id``. The store holds the event; the message only points at it."""

    role: Role
    task_id: str
    event_id: str
    position: int
    event_type: str
    attempt: int = 0
    """Tries so far that raised."""
    error: str | None = None
    """What the last of them raised."""
    recover: bool = False
    """Put the task's worktree back at its last recorded commit first (a resume)."""

    @classmethod
    def of(cls, event: Event, role: Role) -> Work:
        task_id = task_id_of(event.stream_id)
        assert task_id is not None, event.stream_id
        return cls(role, task_id, event.id, event.position, event.type)

    @property
    def key(self) -> str:
        return f"{self.event_id}:{self.role}"

    def message(self, expiration: float | None = None) -> aio_pika.Message:
        return aio_pika.Message(
            json.dumps(asdict(self)).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=self.key,
            expiration=expiration,
        )

    @classmethod
    def from_body(cls, body: bytes) -> Work:
        try:
            fields: dict[str, Any] = json.loads(body)
            work = cls(**fields)
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"a message that is no forgeline work: {body[:200]!r}") from exc
        if work.role not in ROLES:
            raise BrokerError(f"a message for an unknown role {work.role!r}")
        return work

    def retried(self, error: str) -> Work:
        return replace(self, attempt=self.attempt + 1, error=error)


def redact_url(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return "<unparseable broker URL>"
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


def check_url(url: str) -> None:
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigError(
            f"the broker URL {redact_url(url)!r} is not an AMQP URL: use "
            "amqp://user:password@host:5672/ (FORGELINE_BROKER or --broker)"
        )


Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Broker:
    """One connection to RabbitMQ: a channel that publishes with confirms and, for a
    worker, one that consumes with a prefetch."""

    connect_timeout = 10.0

    def __init__(self, url: str, *, heartbeat: float = 10.0) -> None:
        check_url(url)
        self.url = url
        self.location = redact_url(url)
        self.heartbeat = max(1, round(heartbeat))
        self._connection: AbstractRobustConnection | aio_pika.abc.AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumer: AbstractChannel | None = None
        self._consuming: list[tuple[AbstractQueue, str]] = []
        self._declared: set[str] = set()
        self._lost = asyncio.Event()

    def error(self, action: str, exc: BaseException) -> BrokerError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return BrokerError(f"{action} the broker at {self.location}: {detail}")

    # ---------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        """Connect and declare the queues; a ``BrokerError`` names what failed."""
        url = URL(self.url)
        if "heartbeat" not in url.query:
            url = url.update_query(heartbeat=self.heartbeat)
        try:
            self._lost = lost = asyncio.Event()
            self._connection = await aio_pika.connect(
                url, timeout=self.connect_timeout, client_properties={"product": "forgeline"}
            )
            self._connection.close_callbacks.add(lambda *_: lost.set())
            self._publisher = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._publisher.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
            )
            for role in ROLES:
                queue = await self._publisher.declare_queue(queue_name(role), durable=True)
                await queue.bind(self._exchange, routing_key=role)
            await self._publisher.declare_queue(DEAD_QUEUE, durable=True)
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            await self.close()
            raise self.error("cannot connect to", exc) from exc

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._lost.set()
        self._publisher = self._consumer = None
        self._exchange = None
        self._consuming.clear()
        self._declared.clear()
        if connection is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                await asyncio.wait_for(connection.close(), self.connect_timeout)

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._lost.is_set()

    async def closed(self) -> None:
        """Return once the connection is lost (or closed)."""
        await self._lost.wait()

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _channel(self) -> AbstractChannel:
        if self._publisher is None or self._exchange is None or not self.connected:
            raise BrokerError(f"not connected to the broker at {self.location}")
        return self._publisher

    # ---------------------------------------------------------------- publishing

    async def publish(self, works: Iterable[Work]) -> None:
        """Queue ``works`` on their roles' queues; return once the broker has confirmed
        every one (persisted)."""
        self._channel()
        assert self._exchange is not None
        exchange = self._exchange
        try:
            await asyncio.gather(
                *(exchange.publish(w.message(), routing_key=w.role) for w in works)
            )
        except CONNECTION_EXCEPTIONS as exc:
            raise self.error("cannot publish to", exc) from exc

    async def publish_later(self, work: Work, delay: float) -> None:
        """Queue ``work`` on its role's queue after ``delay`` seconds (through the retry
        queue of its attempt)."""
        channel = self._channel()
        name = retry_queue(work.role, work.attempt)
        try:
            if name not in self._declared:
                await channel.declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-dead-letter-exchange": EXCHANGE,
                        "x-dead-letter-routing-key": work.role,
                    },
                )
                self._declared.add(name)
            await channel.default_exchange.publish(
                work.message(expiration=max(delay, 0.001)), routing_key=name
            )
        except CONNECTION_EXCEPTIONS as exc:
            raise self.error("cannot publish to", exc) from exc

    async def dead_letter(self, work: Work) -> None:
        channel = self._channel()
        try:
            await channel.default_exchange.publish(work.message(), routing_key=DEAD_QUEUE)
        except CONNECTION_EXCEPTIONS as exc:
            raise self.error("cannot publish to", exc) from exc

    async def take_dead(self, task_id: str) -> list[Work]:
        """Remove the task's messages from the dead-letter queue (the others stay) and
        return them."""
        if self._connection is None or not self.connected:
            raise BrokerError(f"not connected to the broker at {self.location}")
        taken: list[Work] = []
        try:
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(DEAD_QUEUE, durable=True)
                while (message := await queue.get(fail=False, no_ack=False)) is not None:
                    try:
                        work = Work.from_body(message.body)
                    except BrokerError:
                        continue  # not ours to judge: left unacknowledged, so it stays
                    if work.task_id == task_id:
                        taken.append(work)
                        await message.ack()
            finally:
                await channel.close()  # what was not acknowledged goes back to the queue
        except CONNECTION_EXCEPTIONS as exc:
            raise self.error("cannot read the dead-letter queue of", exc) from exc
        return taken

    # ---------------------------------------------------------------- consuming

    async def consume(self, roles: Sequence[Role], prefetch: int, handler: Handler) -> None:
        """Deliver the messages of ``roles``' queues to ``handler``, at most ``prefetch``
        unacknowledged at once over all of them."""
        if self._connection is None or not self.connected:
            raise BrokerError(f"not connected to the broker at {self.location}")
        try:
            self._consumer = channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=prefetch, global_=True)
            for role in roles:
                queue: AbstractQueue = await channel.declare_queue(queue_name(role), durable=True)
                self._consuming.append((queue, await queue.consume(handler)))
        except CONNECTION_EXCEPTIONS as exc:
            raise self.error("cannot consume from", exc) from exc

    async def stop_consuming(self) -> None:
        """Take no more messages (those delivered can still be acknowledged)."""
        consuming, self._consuming = self._consuming, []
        for queue, tag in consuming:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):  # gone: nothing more comes
                await queue.cancel(tag)
