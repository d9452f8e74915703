"""``create_app(settings)``: the server as an ASGI application.

Nothing connects when this module is imported or the app is built: the app's lifespan
opens the runtime (``open_runtime``) with an execution that serves every task in the
store (``server_execution``: the pipeline's workers in this process, ``SharedWorkers``;
with a broker configured, the ``forgeline worker`` processes of the cluster, which this
process only submits to and follows), and closes it on shutdown (work in flight
finished and recorded). Submitting (a route) and executing (the
execution) stay apart.

Around the routes: a body size limit (413), CORS only for configured origins, security
headers for the dashboard, and errors as JSON (``api.errors``). The dashboard (``web/``)
is served at ``/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeline.api import errors
from forgeline.api.context import Server
from forgeline.api.limits import BodyLimit
from forgeline.api.routes import agents, events, keys, system, tasks, workspaces
from forgeline.config import Settings
from forgeline.pipeline.execution import ExecutionFactory, SharedWorkers
from forgeline.runtime import Runtime, default_execution, open_runtime

WEB = Path(str(resources.files("forgeline") / "web"))
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
]


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    execution: ExecutionFactory | None = None,
    **options: Any,
) -> FastAPI:
    """The server for ``settings``. Its lifespan opens the runtime: ``execution`` does
    the submitted work (default ``server_execution(settings)``), ``options`` go to ``open_runtime``
    (``models``, ``spawner`` in tests). Given a ``runtime`` already open (``forgeline
    serve`` opens it first, so a bad setting is a message, not a traceback), the app
    uses it and leaves closing it to its opener."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            opened = runtime
            if opened is None:
                opened = await stack.enter_async_context(
                    open_runtime(
                        settings, execution=execution or server_execution(settings), **options
                    )
                )
            server = Server.of(opened)
            app.state.server = server
            try:
                yield
            finally:
                await server.close()

    app = FastAPI(
        title="forgeline",
        summary="A software factory run by AI agents: its tasks, agents, workspaces and events.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(system.public)
    for module in (system, tasks, workspaces, agents, keys, events):
        app.include_router(module.router)
    app.mount("/", StaticFiles(directory=WEB, html=True), name="dashboard")
    config = settings.server
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(BodyLimit, limit=_body_limit(settings))
    app.add_middleware(SecurityHeaders)
    return app


def server_execution(settings: Settings) -> ExecutionFactory:
    """What does a server's submitted work: with ``settings.broker``, the cluster's
    ``forgeline worker`` processes (``transport.BrokerExecution``: this process records,
    follows and starts no stage); else the pipeline's workers in this process for every
    task in the store (``SharedWorkers``)."""
    return SharedWorkers if settings.broker is None else default_execution(settings)


def _body_limit(settings: Settings) -> Callable[[str], int]:
    config = settings.server

    def limit(path: str) -> int:
        upload = path.startswith("/api/workspaces/") and path.endswith("/files")
        return config.max_upload_bytes if upload else config.max_body_bytes

    return limit


class SecurityHeaders:
    """What every answer says to a browser: no sniffing, no framing, no referrer, and
    scripts, styles and connections from this origin only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
