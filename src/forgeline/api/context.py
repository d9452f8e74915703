"""What the routes share: the runtime and the server's own parts, built once by the app's
lifespan (``create_app``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field

from forgeline.api.config import ServerConfig
from forgeline.api.keyring import Keyring
from forgeline.api.limits import RateLimiter
from forgeline.api.metrics import Metrics
from forgeline.pipeline.assigner import Assignments
from forgeline.runtime import Runtime


@dataclass
class Server:
    runtime: Runtime
    keyring: Keyring
    assignments: Assignments
    limiter: RateLimiter
    metrics: Metrics
    background: set[asyncio.Task[None]] = field(default_factory=set)
    """Work a request started and did not wait for (a resume)."""

    def spawn(self, work: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logging.getLogger("forgeline.api").error("%s failed", name, exc_info=t.exception())

        task.add_done_callback(done)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        for task in list(self.background):
            with contextlib.suppress(BaseException):
                await task

    @property
    def config(self) -> ServerConfig:
        return self.runtime.settings.server

    @classmethod
    def of(cls, runtime: Runtime) -> Server:
        store, clock = runtime.store, runtime.services.clock
        return cls(
            runtime=runtime,
            keyring=Keyring(store, clock),
            assignments=Assignments(store, clock),
            limiter=RateLimiter(runtime.settings.server.rate_limit),
            metrics=Metrics(store),
        )
