"""A store as forgeline wrote it before the schema had versions: the DDL of both backends
as it was then, and rows that forgeline version wrote (a run of it, read back with
``sqlite3``: payloads as its ``dump_data`` made them, ``created_at`` as its SQLite backend
stored it). Kept verbatim, never updated: it is what an upgrade must read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tests.store.conftest import Backend

SQLITE_DDL = (
    """
    CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        causation_id TEXT,
        actor TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (stream_id, version)
    )
    """,
    """
    CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause
        ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL
    """,
    """
    CREATE TABLE IF NOT EXISTS checkpoints (
        subscriber TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        current_phase TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS agent_events (
        position INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        event_type TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS agent_events_task ON agent_events (task_id, position)",
)

POSTGRES_DDL = (
    """
    CREATE TABLE IF NOT EXISTS events (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        causation_id TEXT,
        actor TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT events_stream_version UNIQUE (stream_id, version)
    )
    """,
    """
    CREATE UNIQUE INDEX IF NOT EXISTS events_once_per_cause
        ON events (stream_id, causation_id, type) WHERE causation_id IS NOT NULL
    """,
    """
    CREATE TABLE IF NOT EXISTS checkpoints (
        subscriber TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        current_phase TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS agent_events (
        position BIGINT PRIMARY KEY,
        task_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        event_type TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS agent_events_task ON agent_events (task_id, position)",
)

# (position, id, stream_id, version, type, data, correlation_id, causation_id, actor,
# created_at), in position order.
EVENTS = [
    (
        1,
        "e01",
        "task-a",
        1,
        "task.initiated",
        '{"type":"task.initiated","request":"todo cli","workspace":"/w","branch":"forgeline/a",'
        '"base_commit":"c0","max_fix_rounds":3,"max_review_rounds":3,'
        '"budget":{"tokens":null,"usd":null}}',
        "a",
        None,
        "user",
        "2026-11-02T09:30:01.123456+00:00",
    ),
    (
        2,
        "e02",
        "task-a",
        2,
        "plan.item.dispatched",
        '{"type":"plan.item.dispatched","item_id":"1"}',
        "a",
        "e01",
        "orchestrator",
        "2026-11-02T09:30:02.123456+00:00",
    ),
    (
        3,
        "e03",
        "task-a",
        3,
        "test.results",
        '{"type":"test.results","commit":"c1","passed":2,"failed":1,"errors":0,"skipped":0,'
        '"failing":["t::x"],"output":"boom\\u0000","timed_out":false,"usage":null}',
        "a",
        None,
        "tester",
        "2026-11-02T09:30:03.123456+00:00",
    ),
    (
        4,
        "e04",
        "task-b",
        1,
        "task.initiated",
        '{"type":"task.initiated","request":"a web app","workspace":"/w",'
        '"branch":"forgeline/b","base_commit":"c0","max_fix_rounds":3,"max_review_rounds":3,'
        '"budget":{"tokens":null,"usd":null}}',
        "b",
        None,
        "user",
        "2026-11-02T09:30:04.123456+00:00",
    ),
    (
        5,
        "e05",
        "task-b",
        2,
        "task.cancelled",
        '{"type":"task.cancelled","reason":"changed my mind"}',
        "b",
        None,
        "user",
        "2026-11-02T09:30:05.123456+00:00",
    ),
]
CHECKPOINTS = [("coder", 3)]
TASKS = [
    (
        "a",
        "running",
        "fixer",
        "todo cli",
        "2026-11-02T09:30:01.123456+00:00",
        "2026-11-02T09:30:03.123456+00:00",
    ),
    (
        "b",
        "cancelled",
        "done",
        "a web app",
        "2026-11-02T09:30:04.123456+00:00",
        "2026-11-02T09:30:05.123456+00:00",
    ),
]
AGENT_EVENTS = [
    (1, "a", "user", "task.initiated", "2026-11-02T09:30:01.123456+00:00"),
    (2, "a", "orchestrator", "plan.item.dispatched", "2026-11-02T09:30:02.123456+00:00"),
    (3, "a", "tester", "test.results", "2026-11-02T09:30:03.123456+00:00"),
    (4, "b", "user", "task.initiated", "2026-11-02T09:30:04.123456+00:00"),
    (5, "b", "user", "task.cancelled", "2026-11-02T09:30:05.123456+00:00"),
]


def _literal(value: object, backend: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("'", "''")
    if backend == "postgres" and _is_timestamp(text):
        return f"'{text}'::timestamptz"
    return f"'{text}'"


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text


def _insert(table: str, rows: Sequence[tuple[object, ...]], backend: str, skip: int = 0) -> str:
    values = ", ".join(
        "(" + ", ".join(_literal(v, backend) for v in row[skip:]) + ")" for row in rows
    )
    return f"INSERT INTO {table} VALUES {values}"


async def write_previous_store(backend: Backend) -> None:
    """Create the previous schema in ``backend``'s empty database and fill it with the
    rows above (positions assigned by the database, as then)."""
    ddl = SQLITE_DDL if backend.name == "sqlite" else POSTGRES_DDL
    columns = "id, stream_id, version, type, data, correlation_id, causation_id, actor, created_at"
    await backend.execute(
        *ddl,
        _insert(f"events ({columns})", EVENTS, backend.name, skip=1),
        _insert("checkpoints", CHECKPOINTS, backend.name),
        _insert("tasks", TASKS, backend.name),
        _insert("agent_events", AGENT_EVENTS, backend.name),
    )
