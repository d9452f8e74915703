"""The six stages as a DBOS workflow of six steps: each step's output is checkpointed in
the system database before the next step runs. Workflows run in ``inflight`` threads."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import STAGES, Clock, Result

PERSISTS = (
    "per step an operation_outputs row (the step's output), plus the workflow_status row "
    "inserted at the start and updated at the end"
)


def _drive(system_url: str, result: Result, tasks: int, inflight: int) -> None:
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "forgeline-bench",
        "system_database_url": system_url,
        "run_admin_server": False,
        "sys_db_pool_size": max(inflight, 20),
    }
    DBOS(config=config)

    def step(stage: str) -> Any:
        @DBOS.step(name=stage)
        def run(task: str) -> str:
            return f"{stage} done"

        return run

    steps = [step(stage) for stage in STAGES]

    @DBOS.workflow(name="six_stages")
    def six_stages(task: str) -> int:
        return sum(1 for s in steps if s(task))

    DBOS.launch()
    try:
        latencies: list[float] = []
        completed = 0

        def one(n: int) -> None:
            nonlocal completed
            started = time.perf_counter()
            if six_stages(f"task-{n}") == len(STAGES):
                latencies.append(time.perf_counter() - started)
                completed += 1

        clock = Clock()
        with ThreadPoolExecutor(inflight) as pool:
            list(pool.map(one, range(tasks)))
        result.seconds = clock.elapsed()
        result.cpu_seconds = clock.cpu()
        result.completed = completed
        result.latencies = latencies
    finally:
        DBOS.destroy()


def run_sqlite(directory: Path, tasks: int, inflight: int) -> Result:
    path = directory / "dbos.sqlite"
    # WAL is a property of the file: set it before DBOS opens it (synchronous stays FULL).
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    result = Result("dbos", "sqlite", tasks, inflight, persists=PERSISTS)
    _drive(f"sqlite:///{path}", result, tasks, inflight)
    result.note = f"{inflight} threads, WAL (synchronous=FULL)"
    return result


def run_postgres(url: str, tasks: int, inflight: int) -> Result:
    result = Result("dbos", "postgres", tasks, inflight, persists=PERSISTS)
    _drive(url, result, tasks, inflight)
    result.note = f"{inflight} threads"
    return result
