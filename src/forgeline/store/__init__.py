"""Event stores: one contract (``EventStore``), SQLite embedded, Postgres scaled."""

from __future__ import annotations

from pathlib import Path

from forgeline.errors import ConfigError
from forgeline.store.base import AgentEventRow, AppendRequest, EventStore, TaskRow
from forgeline.store.sqlite import SQLiteEventStore

__all__ = [
    "AgentEventRow",
    "AppendRequest",
    "EventStore",
    "SQLiteEventStore",
    "TaskRow",
    "open_store",
]


def open_store(url: str, *, create: bool = True) -> EventStore:
    """Build (not yet open) the store named by ``url``.

    ``sqlite:///relative/or/absolute.db``, a plain file path, or
    ``postgresql://user@host:port/db``. With ``create=False`` opening it refuses, with a
    clear error, when there is no store there (a command that only reads creates nothing).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from forgeline.store.postgres import PostgresEventStore

        return PostgresEventStore(url, create=create)
    if url.startswith("sqlite:///"):
        return SQLiteEventStore(Path(url.removeprefix("sqlite:///")), create=create)
    if "://" in url:
        raise ConfigError(
            f"unknown store URL {url!r}: use sqlite:///path/to/file.db or postgresql://..."
        )
    return SQLiteEventStore(Path(url), create=create)
