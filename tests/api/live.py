"""The server over real HTTP: uvicorn in a thread on a free loopback port, around the
scripted todo models (or ``models``); keys made in its store first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from forgeline.api.keyring import Keyring
from forgeline.config import Settings
from forgeline.core.keys import Scope
from forgeline.store import open_store
from tests.api.conftest import server_app, server_settings
from tests.conftest import free_port


@dataclass
class Live:
    url: str
    keys: dict[str, str]
    settings: Settings

    def client(self, scope: str = "write") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[scope]}"}, timeout=30
        )

    def settle(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        with self.client("read") as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                task: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
                if task["status"] in ("completed", "failed", "cancelled", "needs_clarification"):
                    return task
                time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not settle in {timeout} s")


async def _make_keys(settings: Settings) -> dict[str, str]:
    assert settings.store is not None
    async with open_store(settings.store) as store:
        ring = Keyring(store)
        scopes: tuple[Scope, ...] = ("read", "write", "admin")
        return {scope: (await ring.create(f"{scope} key", scope))[1] for scope in scopes}


@contextmanager
def live_server(
    tmp_path: Path, models: dict[str, Any] | None = None, **server: Any
) -> Iterator[Live]:
    settings = server_settings(tmp_path, **server)
    Path(settings.store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    keys = asyncio.run(_make_keys(settings))
    port = free_port()
    config = uvicorn.Config(
        server_app(settings, models),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the server did not start")
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", keys, settings)
    finally:
        uv.should_exit = True
        thread.join(60)
