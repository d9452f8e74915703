"""Given-events helpers: build recorded events without a store."""

from __future__ import annotations

from datetime import UTC, datetime

from forgeline.core.events import Event, EventData, NewEvent

AT = datetime(2026, 1, 1, tzinfo=UTC)


class History:
    """A stream's recorded events, appended in order like a store would."""

    def __init__(self, task_id: str = "t1") -> None:
        self.task_id = task_id
        self.events: list[Event] = []

    def record(self, new: NewEvent) -> Event:
        event = Event(
            **new.model_dump(), version=len(self.events) + 1, position=len(self.events) + 1
        )
        self.events.append(event)
        return event

    def add(self, data: EventData, actor: str = "agent", cause: str | None = None) -> Event:
        return self.record(
            NewEvent(
                stream_id=f"task-{self.task_id}",
                data=data,
                correlation_id=self.task_id,
                causation_id=cause,
                actor=actor,
                created_at=AT,
            )
        )
