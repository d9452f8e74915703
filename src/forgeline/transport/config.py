"""Settings of distributed mode: the ``[transport]`` table (``Settings.transport``).

The broker itself is ``Settings.broker`` (``broker = "amqp://..."``, ``FORGELINE_BROKER``):
with it set, every entry point hands work to ``forgeline worker`` processes through
RabbitMQ instead of running the stages itself.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TransportConfig(BaseModel):
    """How work moves between machines: the ``[transport]`` table."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(4, ge=1, le=256)
    """Messages a worker handles at once (its prefetch), every queue it takes from
    together."""
    max_attempts: int = Field(5, ge=1, le=50)
    """Tries of one message whose handling raised (a lost store connection, a model that
    did not answer, a bug) before it goes to the dead-letter queue."""
    backoff: float = Field(1.0, gt=0)
    """Seconds before the first retry; each next retry waits twice as long."""
    backoff_max: float = Field(60.0, gt=0)
    """The longest wait before a retry, in seconds."""
    jitter: float = Field(0.5, ge=0, le=1)
    """Each wait is drawn from [wait x (1 - jitter), wait]: retries of many messages that
    failed together spread out."""
    heartbeat: float = Field(10.0, gt=0, le=600)
    """Seconds between a worker's heartbeats in the store (``forgeline workers``); the
    broker connection's heartbeat too, so a worker cut off from the broker is noticed
    within about twice this."""
    relay: bool = True
    """Whether a worker stands by as the outbox relay (one relay publishes at a time)."""
    git_remote: str | None = None
    """Where workers on machines without the shared workspaces root get repositories:
    repository ``R`` lives at ``<git_remote>/R`` (a directory of bare repositories or a
    URL prefix); submitters push a new task's branch there, workers fetch it before each
    stage and push each commit before recording it (``transport/remote.py``). Unset:
    workers share the workspaces root's filesystem."""
