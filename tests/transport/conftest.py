"""Fixtures of the transport tests: a database of its own per test on the session's
Postgres cluster, the session's RabbitMQ node with forgeline's queues emptied, and
runtimes for workers and submitters around the scripted todo models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
import pytest
from pydantic_ai.models import Model

from forgeline.config import Settings
from forgeline.core.reactions import STAGES, Role
from forgeline.llm.gateway import ModelRegistry
from forgeline.pipeline.execution import ExecutionFactory
from forgeline.runtime import Runtime, open_runtime
from forgeline.sandbox.local import LocalSpawner
from forgeline.transport.broker import queue_names
from forgeline.transport.config import TransportConfig
from forgeline.transport.worker import BrokerWorker
from tests.conftest import RabbitNode
from tests.scripts import todo_project


def fresh_database(url: str) -> str:
    """A new, empty database on the cluster of ``url``; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def drop_database(url: str, database: str) -> None:
    name = database.rpartition("/")[2]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[str]:
    url = fresh_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


async def purge(url: str, max_attempts: int = 50) -> None:
    """Delete forgeline's queues (a test starts with none of an earlier test's messages)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in queue_names(max_attempts):
            await channel.queue_delete(name)
    finally:
        await connection.close()


@pytest.fixture
async def broker_url(rabbitmq_node: RabbitNode) -> str:
    await purge(rabbitmq_node.url)
    return rabbitmq_node.url


def settings(root: Path, store: str, broker: str, **transport: Any) -> Settings:
    config = {"heartbeat": 2.0, "backoff": 0.2, "backoff_max": 1.0} | transport
    return Settings(
        workspaces_root=root,
        store=store,
        broker=broker,
        transport=TransportConfig(**config),
        workspace_venv=False,
    )


@asynccontextmanager
async def runtime(
    config: Settings,
    models: Mapping[str, Model] | None = None,
    execution: ExecutionFactory | None = None,
) -> AsyncIterator[Runtime]:
    registry = ModelRegistry(models or todo_project.models())  # type: ignore[arg-type]
    async with open_runtime(
        config, models=registry, spawner=LocalSpawner(), execution=execution
    ) as opened:
        yield opened


@asynccontextmanager
async def worker(
    config: Settings,
    roles: tuple[Role, ...] = STAGES,
    models: Mapping[str, Model] | None = None,
    **options: Any,
) -> AsyncIterator[BrokerWorker]:
    """A worker serving in this process until the block ends (then drained)."""
    async with runtime(config, models) as opened:
        serving = BrokerWorker(opened, roles, **options)
        stop = asyncio.Event()
        task = asyncio.create_task(serving.run(stop))
        try:
            yield serving
        finally:
            stop.set()
            await task


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)
