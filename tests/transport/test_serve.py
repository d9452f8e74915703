"""`forgeline serve --broker`: the server submits to the cluster and follows it; the
stages run in a `forgeline worker` process, never in the server. Real Postgres,
RabbitMQ, git, processes; scripted models."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from forgeline.api.keyring import Keyring
from forgeline.core.events import task_stream
from tests.conftest import free_port
from tests.scripts import todo_project
from tests.transport.conftest import runtime, settings
from tests.transport.processes import CONFIG, Process


async def test_a_task_submitted_to_the_server_is_done_by_a_worker_of_the_cluster(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config_file = tmp_path / "forgeline.toml"
    config_file.write_text(CONFIG)
    async with runtime(settings(root, store_url, broker_url)) as admin:
        _, key = await Keyring(admin.store).create("test", "write")
    port = free_port()
    cluster = [*("--store", store_url, "--broker", broker_url, "--config", str(config_file))]
    server = Process(
        ["serve", "--port", str(port), "--workspaces-root", str(root), *cluster,
         "--unsafe-no-sandbox"],
        tmp_path / "serve.log",
    )  # fmt: skip
    worker: Process | None = None
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as api:

            async def answers() -> bool:
                assert server.alive(), server.output()
                try:
                    return (await api.get("/api/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await until_async(answers, 60, "the server answers")
            assert "the workers of amqp://" in " ".join(server.output().split())
            submitted = await api.post(
                "/api/tasks", json={"request": "a todo CLI", "workspace": "todo"}
            )
            assert submitted.status_code == 201, submitted.text
            task_id = submitted.json()["id"]

            # no worker yet: the server records the task and runs none of its stages
            await asyncio.sleep(3)
            async with runtime(settings(root, store_url, broker_url)) as reader:
                events = await reader.store.read_stream(task_stream(task_id))
            assert [e.type for e in events] == ["task.initiated"]

            worker = Process(
                ["worker", "--name", "w1", "--root", str(root), *cluster, "--unsafe-no-sandbox"],
                tmp_path / "worker.log",
            )

            async def completed() -> bool:
                assert worker is not None and worker.alive(), worker and worker.output()
                body = (await api.get(f"/api/tasks/{task_id}")).json()
                assert body["status"] not in ("failed", "cancelled"), str(body)[:3000]
                return bool(body["status"] == "completed")

            await until_async(completed, 120, "the task completed")
            async with runtime(settings(root, store_url, broker_url)) as reader:
                events = await reader.store.read_stream(task_stream(task_id))
            assert [e.type for e in events] == todo_project.EVENT_CHAIN
    finally:
        served = server.stop()
        worked = worker.stop() if worker is not None else ""
    assert "worker stopped after" in worked, worked
    handled = int(worked.rsplit("worker stopped after ", 1)[1].split()[0])
    assert handled >= 6, worked  # the stages' messages: the worker did the work
    assert "Traceback" not in served, served


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until the coroutine function ``check()`` returns True."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.2)
