"""Fixtures of the store tests: a Postgres schema of its own for each test, and one
empty database of each backend for the tests that run on both."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from forgeline.store.base import EventStore
from forgeline.store.postgres import PostgresEventStore
from forgeline.store.sqlite import SQLiteEventStore


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    options = " ".join(v for k, v in query if k == "options")
    query = [(k, v) for k, v in query if k != "options"]
    query.append(("options", f"{options} -c search_path={schema}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture
async def schema_url(postgres_url: str) -> AsyncIterator[str]:
    """A URL whose tables live in a new, empty schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield with_search_path(postgres_url, schema)
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class Backend:
    """One database of one backend, for tests that run on both: stores opened on it, and
    plain SQL run on it with the driver, behind the stores' backs."""

    name: str
    where: str
    """The SQLite file's path or the Postgres URL."""

    @property
    def store_class(self) -> type[SQLiteEventStore] | type[PostgresEventStore]:
        return SQLiteEventStore if self.name == "sqlite" else PostgresEventStore

    def store(self, cls: type[EventStore] | None = None, *, create: bool = True) -> EventStore:
        """A store (not yet open) of ``cls`` (a subclass of the backend's) on the database."""
        return (cls or self.store_class)(self.where, create=create)

    async def execute(self, *statements: str) -> None:
        if self.name == "sqlite":
            Path(self.where).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(self.where, isolation_level=None)) as conn:
                for statement in statements:
                    conn.execute(statement)
            return
        async with await psycopg.AsyncConnection.connect(self.where, autocommit=True) as pg:
            for statement in statements:
                await pg.execute(statement)

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.where)) as conn:
                return conn.execute(sql).fetchall()
        async with await psycopg.AsyncConnection.connect(self.where, autocommit=True) as pg:
            return await (await pg.execute(sql)).fetchall()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / ".forgeline" / "forgeline.db"))
    return Backend("postgres", request.getfixturevalue("schema_url"))
