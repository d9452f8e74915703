"""Fixtures of the tool tests: a local HTTP peer and a real SQLite event store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from forgeline.store import open_store
from forgeline.store.base import EventStore
from tests.tools.peers import Peer


@pytest.fixture
def peer() -> Iterator[Peer]:
    with Peer() as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    event_store = open_store(f"sqlite:///{tmp_path / 'forgeline.db'}")
    await event_store.open()
    try:
        yield event_store
    finally:
        await event_store.close()
