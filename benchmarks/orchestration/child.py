"""One measurement in a process of its own (so peak memory is its own): prints one
``RESULT {json}`` line. ``python -m benchmarks.orchestration.child TOOL STORE ...``."""

from __future__ import annotations

import argparse
import asyncio
import traceback
from pathlib import Path

from .common import Result, emit

TOOLS = (
    "forgeline",
    "langgraph",
    "eventsourcing",
    "dbos",
    "plain-stage",
    "plain-task",
    "commits",
)


def measure(args: argparse.Namespace) -> Result:
    directory = Path(args.dir)
    tool, store = args.tool, args.store
    if tool == "forgeline":
        from . import forgeline_flow

        url = args.url if store == "postgres" else forgeline_flow.sqlite_url(directory)
        return asyncio.run(
            forgeline_flow.run(url, args.tasks, args.inflight, args.concurrency, store, directory)
        )
    if tool == "commits":
        from . import plain

        if store == "postgres":
            return plain.postgres_commits(args.url)
        return plain.sqlite_commits(directory)
    if tool in ("plain-stage", "plain-task"):
        from . import plain

        return plain.sqlite_flow(directory, args.tasks, per_stage=tool == "plain-stage")
    if tool == "langgraph":
        from . import langgraph_flow

        if store == "postgres":
            return asyncio.run(langgraph_flow.run_postgres(args.url, args.tasks, args.inflight))
        return asyncio.run(langgraph_flow.run_sqlite(directory, args.tasks, args.inflight))
    if tool == "eventsourcing":
        from . import eventsourcing_flow

        if store == "postgres":
            return eventsourcing_flow.run_postgres(args.url, args.tasks, args.inflight)
        return eventsourcing_flow.run_sqlite(directory, args.tasks, args.inflight)
    if tool == "dbos":
        from . import dbos_flow

        if store == "postgres":
            return dbos_flow.run_postgres(args.url, args.tasks, args.inflight)
        return dbos_flow.run_sqlite(directory, args.tasks, args.inflight)
    raise SystemExit(f"unknown tool {tool!r}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orchestration.child")
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("store", choices=("sqlite", "postgres"))
    parser.add_argument("--dir", required=True, help="an empty directory for SQLite files")
    parser.add_argument("--url", default="", help="Postgres URL (a fresh database)")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    try:
        result = measure(args)
    except Exception as exc:
        result = Result(args.tool, args.store, args.tasks, args.inflight)
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    emit(result)


if __name__ == "__main__":
    main()
