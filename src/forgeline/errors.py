"""One root error; each subclass says what went wrong and what to do about it."""

from __future__ import annotations


class ForgelineError(Exception):
    """Root of every error forgeline raises on purpose."""


class ConfigError(ForgelineError):
    """The configuration (forgeline.toml, environment, flags) is invalid."""


class StoreError(ForgelineError):
    """The event store failed or could not be reached."""


class ConcurrencyError(StoreError):
    """A stream was appended to with an out-of-date expected version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}: "
            "another writer appended first; reload the stream and decide again"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEventError(StoreError):
    """A handler's output was already recorded: the same event id, or the same stream,
    causation id and type."""

    def __init__(self, stream_id: str, causation_id: str | None, event_type: str) -> None:
        cause = f" caused by {causation_id}" if causation_id else ""
        super().__init__(
            f"stream {stream_id!r} already has this {event_type!r}{cause}: "
            "the handler ran twice and its first result stands"
        )
        self.stream_id = stream_id
        self.causation_id = causation_id
        self.event_type = event_type


class TaskNotFoundError(ForgelineError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task {task_id!r} in this store: `forgeline tasks` lists them")
        self.task_id = task_id


class InvalidRequestError(ForgelineError):
    """A request or command a user gave cannot be acted on."""


class StageError(ForgelineError):
    """An agent could not complete its stage; the message is shown to the user."""


class WorkspaceError(ForgelineError):
    """A workspace operation failed (git, a path outside the workspace)."""
