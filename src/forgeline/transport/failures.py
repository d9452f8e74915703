"""Which errors a worker retries instead of recording ``stage.failed``.

Embedded, a stage records every error it meets as ``stage.failed`` and the task fails.
On the broker's workers a stage raises two kinds instead (``Services.escalates``), so the
message is tried again with backoff and, after ``[transport] max_attempts`` tries, parked
in the dead-letter queue until ``forgeline retry``:

- transient failures, which a later try may not meet: the store unreachable, a model
  that timed out, was rate-limited, overloaded or unreachable, a broken connection, a
  git remote that refused a commit because the task branch moved there, or did not
  answer (``remote.RemoteError``);
- internal errors (an exception that is no ``ForgelineError`` and no answer of a model):
  a bug, which a retry after the fix completes.

A ``ForgelineError`` that says the work itself is wrong (bad model output after its
retries, a workspace error, an invalid request) is still the task's failure.
"""

from __future__ import annotations

from pydantic_ai.exceptions import (
    AgentRunError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
)

from forgeline.errors import ForgelineError, StoreError
from forgeline.transport.remote import RemoteError

TRANSIENT: tuple[type[BaseException], ...] = (
    StoreError,
    RemoteError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
    ConnectionError,
    TimeoutError,
)


def transient(exc: BaseException) -> bool:
    """A failure a later try may not meet (every one of a group's, for a fallback chain)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(transient(e) for e in exc.exceptions)
    return isinstance(exc, TRANSIENT)


def escalates(exc: BaseException) -> bool:
    """Whether a worker's stage raises ``exc`` for the message to be retried (transient
    or internal) rather than recording it as the task's ``stage.failed``."""
    if transient(exc):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return False  # a fallback chain whose models refused for good
    return not isinstance(exc, ForgelineError | AgentRunError)


def describe(exc: BaseException) -> str:
    """One line for the dead-letter record: the error's type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:2000] if text else type(exc).__name__
