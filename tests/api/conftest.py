"""The server in process: a real runtime (SQLite store, git, the unsandboxed spawner)
around the scripted todo models, keys of every scope, and a TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from forgeline.api.app import create_app
from forgeline.api.context import Server
from forgeline.config import Settings
from forgeline.llm.gateway import ModelRegistry
from forgeline.sandbox.local import LocalSpawner
from tests.scripts import todo_project


def server_settings(tmp_path: Path, **server: Any) -> Settings:
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)
    store = tmp_path / "store" / "forgeline.db"
    return Settings(workspaces_root=root, store=f"sqlite:///{store}", server=server)


def server_app(settings: Settings, models: dict[str, Any] | None = None) -> FastAPI:
    registry = ModelRegistry(models or todo_project.models(), settings=settings)  # type: ignore[arg-type]
    return create_app(settings, models=registry, spawner=LocalSpawner())


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    settings: Settings

    @property
    def server(self) -> Server:
        found: Server = self.client.app.state.server  # type: ignore[attr-defined]
        return found

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def get(self, path: str, scope: str = "read", **kw: Any) -> Any:
        headers = {**self.headers(scope), **kw.pop("headers", {})}
        return self.client.get(path, headers=headers, **kw)

    def post(self, path: str, scope: str = "write", **kw: Any) -> Any:
        headers = {**self.headers(scope), **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, **kw)

    def delete(self, path: str, scope: str = "admin", **kw: Any) -> Any:
        headers = {**self.headers(scope), **kw.pop("headers", {})}
        return self.client.delete(path, headers=headers, **kw)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function) on the server's event loop."""
        return self.client.portal.call(fn, *args)  # type: ignore[union-attr]

    def settle(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait (on the server's loop) until the task needs nobody; its view."""
        import anyio

        from forgeline.core.task import settled

        async def wait() -> None:
            with anyio.fail_after(timeout):
                while not settled(await self.server.runtime.state(task_id)):  # noqa: ASYNC110
                    await anyio.sleep(0.05)

        self.call(wait)
        body: dict[str, Any] = self.get(f"/api/tasks/{task_id}").json()
        return body


def open_api(settings: Settings, models: dict[str, Any] | None = None) -> Iterator[Api]:
    with TestClient(server_app(settings, models)) as client:
        api = Api(client, {}, settings)
        for scope in ("read", "write", "admin"):
            _, key = api.call(api.server.keyring.create, f"{scope} key", scope)
            api.keys[scope] = key
        yield api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from open_api(server_settings(tmp_path))
