"""``recorded_event`` builds an ``Event`` without validation: it must equal what
pydantic's own ``model_construct`` builds, and what validating the fields gives."""

from __future__ import annotations

from forgeline.core.events import Event, NewEvent, PlanItemDispatched, TaskCancelled
from forgeline.store import rows
from forgeline.store.rows import recorded_event


def test_a_recorded_event_is_the_event_pydantic_would_build() -> None:
    assert rows._PLAIN_EVENT
    for data in (TaskCancelled(reason="x"), PlanItemDispatched(item_id="a")):
        new = NewEvent(stream_id="task-t", data=data, correlation_id="t", actor="user")
        fast = recorded_event(new, 3, 7)
        constructed = Event.model_construct(None, **dict(new), version=3, position=7)
        validated = Event(**dict(new), version=3, position=7)
        for other in (constructed, validated):
            assert fast == other
            assert fast.model_fields_set == other.model_fields_set
            assert fast.model_dump() == other.model_dump()
            assert hash(fast) == hash(other)
        assert (fast.version, fast.position, fast.type) == (3, 7, data.type)
        assert fast.model_copy(update={"position": 8}).position == 8
