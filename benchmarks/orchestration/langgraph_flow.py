"""The six stages as a LangGraph ``StateGraph`` with a durable checkpointer.

SQLite: ``AsyncSqliteSaver`` (WAL, synchronous=FULL). Postgres: ``AsyncPostgresSaver`` on
a connection pool. Every run uses ``durability="sync"``: each step's checkpoint is
written before the next step starts. Runs in the benchmark's own environment.
"""

from __future__ import annotations

import asyncio
import operator
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from .common import STAGES, Clock, Result

PERSISTS = (
    "per step a checkpoint row (the whole state, msgpack) plus a checkpoint_writes row per "
    "channel written; 8 checkpoints per task (input, 6 nodes, end)"
)


class State(TypedDict):
    task: str
    done: Annotated[list[str], operator.add]


def _graph() -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)

    def node(stage: str) -> Any:
        async def run(state: State) -> dict[str, list[str]]:
            return {"done": [stage]}

        return run

    previous = START
    for stage in STAGES:
        graph.add_node(stage, node(stage))
        graph.add_edge(previous, stage)
        previous = stage
    graph.add_edge(previous, END)
    return graph


async def _drive(app: Any, result: Result, tasks: int, inflight: int) -> None:
    slots = asyncio.Semaphore(inflight)
    latencies: list[float] = []
    completed = 0

    async def one(n: int) -> None:
        nonlocal completed
        async with slots:
            started = time.perf_counter()
            config = {"configurable": {"thread_id": f"task-{n}"}}
            out = await app.ainvoke({"task": f"task-{n}", "done": []}, config, durability="sync")
            latencies.append(time.perf_counter() - started)
            if out["done"] == list(STAGES):
                completed += 1

    clock = Clock()
    await asyncio.gather(*(one(n) for n in range(tasks)))
    result.seconds = clock.elapsed()
    result.cpu_seconds = clock.cpu()
    result.completed = completed
    result.latencies = latencies


async def run_sqlite(directory: Path, tasks: int, inflight: int) -> Result:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    result = Result("langgraph", "sqlite", tasks, inflight, persists=PERSISTS)
    conn = await aiosqlite.connect(directory / "langgraph.db")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    try:
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        await _drive(_graph().compile(checkpointer=saver), result, tasks, inflight)
    finally:
        await conn.close()
    result.note = "AsyncSqliteSaver, durability=sync"
    return result


async def run_postgres(url: str, tasks: int, inflight: int) -> Result:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    result = Result("langgraph", "postgres", tasks, inflight, persists=PERSISTS)
    size = min(inflight, 16)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(url, min_size=size, max_size=size, kwargs=kwargs) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        await _drive(_graph().compile(checkpointer=saver), result, tasks, inflight)
    result.note = f"AsyncPostgresSaver, pool of {size}, durability=sync"
    return result
