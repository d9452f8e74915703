"""What the tools did, kept for the event log.

Every tool takes a ``Recorder``: a callable that receives one ``tool.*`` payload per call
(a refused or failed call too). ``ToolCalls`` is the recorder a stage uses: it keeps the
payloads in order, and ``events`` turns them into ``NewEvent``s for the stage to record
with its result (the first caused by the stage's trigger, each next one by the one before,
since the store keeps one event of a type per cause). A person's command records them
in its own stream the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from forgeline.core.events import NewEvent, ToolEventData

Recorder = Callable[[ToolEventData], None]

#: The stream of the tool calls a person made from the command line (no task).
CLI_STREAM = "tools-cli"


def ignore(_: ToolEventData) -> None:
    """A recorder that keeps nothing."""


@dataclass
class ToolCalls:
    """The tool calls of one stage run (or one command), in order."""

    records: list[ToolEventData] = field(default_factory=list)

    def __call__(self, data: ToolEventData) -> None:
        self.records.append(data)

    def events(
        self,
        *,
        stream_id: str,
        correlation_id: str,
        causation_id: str | None,
        actor: str,
        created_at: datetime,
    ) -> list[NewEvent]:
        events: list[NewEvent] = []
        cause = causation_id
        for data in self.records:
            event = NewEvent(
                stream_id=stream_id,
                data=data,
                correlation_id=correlation_id,
                causation_id=cause,
                actor=actor,
                created_at=created_at,
            )
            events.append(event)
            cause = event.id
        return events
