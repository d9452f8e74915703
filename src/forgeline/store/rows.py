"""Events as rows of the ``events`` table and back, the same for every backend.

A row read back is parsed by ``core.events.parse_data`` (which upcasts an older payload);
a row that cannot be parsed becomes a ``StoreError`` naming the event, its stream and its
position, never a pydantic traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from forgeline.core.events import Event, NewEvent, dump_data, parse_data
from forgeline.errors import StoreError

EVENT_COLUMNS = (
    "position, id, stream_id, version, type, data, correlation_id, causation_id, actor, created_at"
)
"""The column order every backend selects events in (``event_from_row`` reads it)."""

INSERT_COLUMNS = (
    "id, stream_id, version, type, data, correlation_id, causation_id, actor, created_at"
)
"""The column order of ``event_row``: what an insert writes (the database assigns the
position)."""

Row = Sequence[Any]


def event_row(event: NewEvent, version: int) -> tuple[Any, ...]:
    """``event`` at ``version`` as the values of ``INSERT_COLUMNS`` (``created_at`` as a
    datetime: each backend stores it its own way)."""
    return (
        event.id,
        event.stream_id,
        version,
        event.type,
        dump_data(event.data),
        event.correlation_id,
        event.causation_id,
        event.actor,
        event.created_at,
    )


def event_from_row(row: Row) -> Event:
    """An ``Event`` from a row in ``EVENT_COLUMNS`` order (``created_at`` as a datetime or
    ISO text, ``data`` as JSON text). Raises ``StoreError`` naming the event when the row
    cannot be read."""
    position, id_, stream_id, version, _type, data, corr, cause, actor, created = row
    try:
        return Event(
            position=position,
            id=id_,
            stream_id=stream_id,
            version=version,
            data=parse_data(data),
            correlation_id=corr,
            causation_id=cause,
            actor=actor,
            created_at=created,
        )
    except ValueError as exc:  # pydantic's ValidationError, or an upcaster's refusal
        raise StoreError(
            f"event {id_} ({_type}, stream {stream_id!r}, version {version}, position"
            f" {position}) cannot be read: {_problems(exc)}. A newer forgeline may have written it"
            " (upgrade forgeline), or it was changed outside forgeline; the stream cannot be"
            " folded until it reads, while every other stream stays readable"
        ) from None


def _problems(exc: ValueError) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'payload'}: {error['msg']}"
        for error in exc.errors()[:3]
    )
    more = exc.error_count() - 3
    return problems + (f" (and {more} more)" if more > 0 else "")


def recorded_event(event: NewEvent, version: int, position: int) -> Event:
    """``event`` as recorded. Its fields were validated when it was built, so they are
    copied, not validated again (what ``Event.model_construct`` does, without its walk
    over every field's aliases and defaults: ``event`` has them all)."""
    if not _PLAIN_EVENT:
        return Event.model_construct(None, **dict(event), version=version, position=position)
    fields = {**event.__dict__, "version": version, "position": position}
    recorded = Event.__new__(Event)
    object.__setattr__(recorded, "__dict__", fields)
    object.__setattr__(recorded, "__pydantic_fields_set__", set(fields))
    object.__setattr__(recorded, "__pydantic_extra__", None)
    object.__setattr__(recorded, "__pydantic_private__", None)
    return recorded


_PLAIN_EVENT = (
    set(Event.model_fields) == set(NewEvent.model_fields) | {"version", "position"}
    and not any(f.alias or f.validation_alias for f in Event.model_fields.values())
    and not Event.__private_attributes__
    and not Event.__pydantic_post_init__
    and Event.model_config.get("extra") != "allow"
)
"""``Event`` is built from its fields alone, so ``recorded_event`` may set them directly."""
