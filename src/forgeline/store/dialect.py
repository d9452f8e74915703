"""The SQL one backend speaks, as a table: everything else about storing events is shared.

Each backend fills one ``Dialect`` (``sqlite.SQLITE``, ``postgres.POSTGRES``). Statements
take positional parameters; ``stream_versions`` takes one list of stream ids (Postgres
binds it as an array, SQLite spreads it over ``{list}``, one placeholder per id). Bulk
statements (``set_checkpoints`` and each read model's in ``read_models``) are given rows,
and each backend's recorder sends them its own way: SQLite as ``executemany``, Postgres as
one statement over ``unnest`` of the rows' columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    # -------------------------------------------------------------- reads
    select_stream: str
    """(stream_id, after_version) -> the stream's events after that version, in order."""
    select_all: str
    """(after, limit) -> up to ``limit`` events after that position, in order."""
    select_version: str
    """(stream_id) -> one row: the stream's last version, or NULL."""
    select_checkpoint: str
    """(subscriber) -> its position, if it saved one."""
    select_tasks: str
    """() -> every ``tasks`` row (id, status, current_phase, request, created_at,
    updated_at), oldest first."""
    select_task: str
    """(task_id) -> that ``tasks`` row."""
    select_agent_events: str
    """() -> every ``agent_events`` row (position, task_id, actor, event_type,
    created_at), in position order."""
    select_task_agent_events: str
    """(task_id) -> that task's ``agent_events`` rows, in position order."""

    # ------------------------------------------------------------- writes
    stream_versions: str
    """([stream_id, ...]) -> (stream_id, last version) of those that have events."""
    insert_event: str
    """The values of ``rows.INSERT_COLUMNS`` -> the position the database gave it."""
    set_checkpoints: str
    """Bulk (subscriber, position): save each, never moving one back."""
    read_models: Mapping[str, str]
    """Bulk, by the statement names that ``projections.READ_MODELS`` write rows for."""

    # ------------------------------------------------------------- schema
    forgeline_tables: str
    """() -> the names of those of ``events`` and ``schema_version`` that exist."""
    schema_version: str
    """() -> one row: the highest migration applied (``schema_version`` exists)."""
    record_version: str
    """(version, summary, applied_at): a migration was applied."""
    select_last_position: str = "SELECT MAX(position) FROM events"
    """() -> one row: the log's last position, or NULL."""
