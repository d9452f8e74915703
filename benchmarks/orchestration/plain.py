"""The machine's own limits, without any framework: durable single-row commits, and the
six-stage flow written by hand against sqlite3 (one commit per stage, or one per task)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from .common import STAGES, Clock, Result


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def sqlite_commits(directory: Path, seconds: float = 3.0) -> Result:
    """Single-row durable commits per second (WAL, synchronous=FULL), one connection."""
    conn = _connect(directory / "commits.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    result = Result("sqlite3 single-row commits", "sqlite", 0, 1)
    clock = Clock()
    n = 0
    while clock.elapsed() < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 64,))
        conn.execute("COMMIT")
        n += 1
    result.tasks = result.completed = n
    result.seconds = clock.elapsed()
    result.cpu_seconds = clock.cpu()
    result.persists = "one 64-byte row per commit (the unit is a commit, not a task)"
    conn.close()
    return result


def postgres_commits(url: str, connections: int = 8, seconds: float = 3.0) -> Result:
    """Single-row durable commits per second with ``connections`` clients (one thread
    each; fsync and synchronous_commit on)."""
    import psycopg

    setup = psycopg.connect(url, autocommit=True)
    setup.execute("CREATE TABLE IF NOT EXISTS commits (id BIGSERIAL PRIMARY KEY, v TEXT)")
    setup.close()
    counts = [0] * connections
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.perf_counter() < deadline:
                conn.execute("INSERT INTO commits (v) VALUES (%s)", ("x" * 64,))
                counts[i] += 1

    clock = Clock()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = Result("postgres single-row commits", "postgres", sum(counts), connections)
    result.completed = sum(counts)
    result.seconds = clock.elapsed()
    result.cpu_seconds = clock.cpu()
    result.persists = f"one 64-byte row per commit, {connections} connections"
    return result


def sqlite_flow(directory: Path, tasks: int, per_stage: bool) -> Result:
    """The six stages by hand, one task at a time: a row per stage, committed after each
    stage (``per_stage``) or once per task."""
    conn = _connect(directory / "plain.db")
    conn.execute(
        "CREATE TABLE steps (task TEXT NOT NULL, stage TEXT NOT NULL, output TEXT NOT NULL,"
        " PRIMARY KEY (task, stage))"
    )
    name = "plain sqlite3, commit per stage" if per_stage else "plain sqlite3, commit per task"
    result = Result(name, "sqlite", tasks, 1)
    latencies: list[float] = []
    clock = Clock()
    for n in range(tasks):
        started = time.perf_counter()
        task = f"task-{n}"
        if not per_stage:
            conn.execute("BEGIN IMMEDIATE")
        for stage in STAGES:
            if per_stage:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (task, stage, f"{stage} done"))
            if per_stage:
                conn.execute("COMMIT")
        if not per_stage:
            conn.execute("COMMIT")
        latencies.append(time.perf_counter() - started)
    result.seconds = clock.elapsed()
    result.cpu_seconds = clock.cpu()
    result.completed = tasks
    result.latencies = latencies
    result.persists = "one row per stage; " + (
        "6 commits per task" if per_stage else "1 commit per task"
    )
    conn.close()
    return result
