"""The relay's lease: one outbox relay publishes at a time, on any number of machines.

A Postgres session-level advisory lock, taken on a connection of its own: the relay that
holds it publishes; the others wait, trying again every ``poll`` seconds. When the
holder's process dies, or its connection to the database breaks, Postgres releases the
lock and the next relay takes over from the recorded checkpoint. A relay checks its
connection before each page it publishes and stops publishing when it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
from psycopg.rows import TupleRow

from forgeline.errors import StoreError

# pg_try_advisory_lock key ("fl-relay" in ASCII); the store's append lock is another key.
RELAY_LOCK = 0x666C2D72656C6179


class LeaseLost(StoreError):
    """The relay's database connection broke: another relay may be publishing now."""


class Lease:
    """A held lease; ``check()`` raises ``LeaseLost`` once it is gone."""

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        self._conn = conn

    async def check(self) -> None:
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LeaseLost(f"the relay's lease was lost: {exc}") from exc


@contextlib.asynccontextmanager
async def relay_lease(
    url: str, stop: asyncio.Event, *, poll: float = 1.0, key: int = RELAY_LOCK
) -> AsyncIterator[Lease | None]:
    """Wait for the lease and yield it (``None`` if ``stop`` was set first); release it
    on the way out."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=10, application_name="forgeline-relay"
        )
    except psycopg.Error as exc:
        raise StoreError(f"the relay cannot connect to the store: {exc}") from exc
    try:
        while not stop.is_set():
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
        else:
            yield None
            return
        yield Lease(conn)
    except psycopg.Error as exc:
        raise LeaseLost(f"the relay's lease was lost: {exc}") from exc
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.close()  # ends the session: the lock goes with it
