"""``python -m benchmarks.orchestration``: forgeline's orchestration overhead against
LangGraph, eventsourcing and DBOS, all durable, six stages with instant results.

Each measurement runs in a process of its own (``child.py``), so its peak memory is its
own. forgeline runs on this interpreter; the other tools on the benchmark's environment
(``benchmarks/.venv``, made by ``benchmarks/orchestration/setup.sh``), and are skipped,
saying so, when it is missing. Postgres is a throwaway cluster (``scripts/postgres.sh``)
started here and stopped, by the PID in its data directory, at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_VENV = ROOT / "benchmarks" / ".venv"
POSTGRES_SCRIPT = ROOT / "scripts" / "postgres.sh"
COMPETITORS = ("langgraph", "eventsourcing", "dbos")

# The targets (durable, six stages, instant models, 2 cores).
TARGET_SQLITE_INFLIGHT = 2000.0
TARGET_SQLITE_SERIAL = 800.0
TARGET_POSTGRES = 600.0
TARGET_QUEUED_MEMORY_MB = 1024.0
TARGET_DISPATCH_P99_MS = 50.0

Row = dict[str, Any]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.orchestration",
        description="Orchestration overhead: forgeline against LangGraph, eventsourcing and "
        "DBOS (durable, six stages, instant stage results).",
    )
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per throughput run")
    parser.add_argument("--inflight", type=int, default=100, help="tasks in flight at once")
    parser.add_argument(
        "--serial-tasks",
        type=int,
        default=200,
        help="tasks for the one-at-a-time run (0 skips it)",
    )
    parser.add_argument(
        "--queued", type=int, default=10_000, help="tasks queued at once (0 skips that run)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="events each forgeline stage worker handles at once",
    )
    parser.add_argument(
        "--only", choices=("forgeline",), help="run forgeline alone (no competitors)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw commit limits")
    parser.add_argument("--json", type=Path, help="also write every result row to this file")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per measurement")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------- postgres


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def script_server(script: Path, what: str, *args: str) -> Iterator[str]:
    """A throwaway server started by one of the repository's scripts (``start DIR
    ARGS...``, printing its URL last) and stopped by it (``stop DIR``); yields the URL.
    Its directory is not under a private temporary directory of ours: the server may run
    as another user (RabbitMQ runs as ``rabbitmq``)."""
    node_dir = Path(tempfile.mkdtemp(prefix=f"forgeline-bench-{script.stem}-"))
    try:
        done = subprocess.run(
            ["bash", str(script), "start", str(node_dir), *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise SystemExit(f"cannot start {what}:\n{done.stderr.strip()}")
        yield lines[-1]
    finally:
        subprocess.run(
            ["bash", str(script), "stop", str(node_dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(node_dir, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster (fsync and synchronous_commit on); yields its URL."""
    with script_server(POSTGRES_SCRIPT, "a Postgres cluster", str(_free_port())) as url:
        yield url


def fresh_database(url: str, name: str) -> str:
    """``url`` pointing at a new, empty database ``name``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


# ---------------------------------------------------------------------- measuring


def bench_python() -> Path | None:
    python = BENCH_VENV / "bin" / "python"
    return python if python.exists() else None


def measure(
    python: Path | str,
    tool: str,
    store: str,
    *,
    url: str = "",
    tasks: int = 0,
    inflight: int = 1,
    concurrency: int = 32,
    timeout: int = 900,
) -> Row:
    """Run one measurement in a child process and return its result row."""
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-"))
    command = [
        str(python),
        "-m",
        "benchmarks.orchestration.child",
        tool,
        store,
        "--dir",
        str(work),
        "--url",
        url,
        "--tasks",
        str(tasks),
        "--inflight",
        str(inflight),
        "--concurrency",
        str(concurrency),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    label = f"{tool} on {store}, {tasks} tasks, {inflight} in flight"
    print(f"  measuring {label} ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {
            "tool": tool,
            "store": store,
            "tasks": tasks,
            "inflight": inflight,
            "error": f"timed out after {timeout} s",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            row: Row = json.loads(line.removeprefix("RESULT "))
            if row.get("error"):
                print(done.stderr[-3000:], file=sys.stderr)
            return row
    tail = (done.stderr or done.stdout)[-2000:]
    return {
        "tool": tool,
        "store": store,
        "tasks": tasks,
        "inflight": inflight,
        "error": f"exit {done.returncode}: {tail}",
    }


def library_versions(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json\n"
        "names = ['langgraph', 'langgraph-checkpoint-sqlite', 'langgraph-checkpoint-postgres',"
        " 'eventsourcing', 'dbos', 'psycopg']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
    try:
        versions: dict[str, str] = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {}
    return versions


# ------------------------------------------------------------------------ printing


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[Row], baseline: dict[tuple[str, int], float]) -> str:
    header = (
        "| tool | store | tasks | in flight | done | tasks/s | vs forgeline | p50 ms | p99 ms "
        "| dispatch p99 ms | peak MB | CPU ms/task |"
    )
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        if row.get("error"):
            lines.append(
                f"| {row['tool']} | {row['store']} | {_fmt(row.get('tasks'))} "
                f"| {_fmt(row.get('inflight'))} | error: {row['error'].splitlines()[0][:80]} "
                "| | | | | | | |"
            )
            continue
        rate = row["tasks_per_s"]
        base = baseline.get((row["store"], row["inflight"]))
        versus = "1.00" if row["tool"] == "forgeline" else "-"
        if row["tool"] != "forgeline" and base and rate and not row["tool"].endswith("commits"):
            versus = f"{rate / base:.2f}"
        lines.append(
            f"| {row['tool']} | {row['store']} | {_fmt(row['tasks'])} | {_fmt(row['inflight'])} "
            f"| {_fmt(row['completed'])} | {_fmt(rate)} | {versus} "
            f"| {_fmt(row.get('latency_p50_ms'))} | {_fmt(row.get('latency_p99_ms'))} "
            f"| {_fmt(row.get('dispatch_p99_ms'))} | {_fmt(row.get('peak_rss_mb'))} "
            f"| {_fmt(row.get('cpu_ms_per_task'), 2)} |"
        )
    return "\n".join(lines)


def persisted(rows: Sequence[Row]) -> str:
    seen: dict[str, str] = {}
    for row in rows:
        if row.get("persists") and row["tool"] not in seen:
            seen[row["tool"]] = row["persists"]
    return "\n".join(f"- {tool}: {what}" for tool, what in seen.items())


def targets(rows: Sequence[Row], args: argparse.Namespace) -> list[str]:
    def find(store: str, inflight: int) -> Row | None:
        for row in rows:
            key = (row["tool"], row["store"], row.get("inflight"))
            if key == ("forgeline", store, inflight) and not row.get("error"):
                return row
        return None

    out: list[str] = []

    def check(label: str, value: float | None, goal: float, higher: bool, unit: str) -> None:
        if value is None:
            out.append(f"- {label}: not measured")
            return
        met = value >= goal if higher else value < goal
        sign = ">=" if higher else "<"
        verdict = "met" if met else "NOT met"
        out.append(f"- {label}: {value:,.1f} {unit} (target {sign} {goal:,.0f}): {verdict}")

    if (row := find("sqlite", args.inflight)) is not None:
        check(
            f"SQLite, {args.inflight} in flight",
            row["tasks_per_s"],
            TARGET_SQLITE_INFLIGHT,
            True,
            "tasks/s",
        )
    if (row := find("sqlite", 1)) is not None:
        check("SQLite, one at a time", row["tasks_per_s"], TARGET_SQLITE_SERIAL, True, "tasks/s")
    if (row := find("postgres", args.inflight)) is not None:
        check(
            f"Postgres, {args.inflight} in flight",
            row["tasks_per_s"],
            TARGET_POSTGRES,
            True,
            "tasks/s",
        )
    for store in ("sqlite", "postgres"):
        if args.queued and (row := find(store, args.queued)) is not None:
            check(
                f"{store}, {args.queued:,} queued: peak memory",
                row["peak_rss_mb"],
                TARGET_QUEUED_MEMORY_MB,
                False,
                "MB",
            )
            check(
                f"{store}, {args.queued:,} queued: p99 stage dispatch",
                row.get("dispatch_p99_ms"),
                TARGET_DISPATCH_P99_MS,
                False,
                "ms",
            )
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stores = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    competitors_python = None if args.only else bench_python()
    notes: list[str] = []
    if args.only:
        notes.append("competitors skipped (--only forgeline)")
    elif competitors_python is None:
        notes.append(
            "competitors skipped: benchmarks/.venv is missing "
            "(run benchmarks/orchestration/setup.sh)"
        )
    rows: list[Row] = []
    pg_version = ""

    def forgeline(store: str, url: str = "") -> None:
        kw: dict[str, Any] = {"concurrency": args.concurrency, "timeout": args.timeout}
        if store == "postgres":
            kw["url"] = fresh_database(url, "bench_forgeline")
        rows.append(
            measure(
                sys.executable, "forgeline", store, tasks=args.tasks, inflight=args.inflight, **kw
            )
        )
        if store == "sqlite" and args.serial_tasks:
            rows.append(
                measure(
                    sys.executable, "forgeline", store, tasks=args.serial_tasks, inflight=1, **kw
                )
            )
        if args.queued:
            if store == "postgres":
                kw["url"] = fresh_database(url, "bench_forgeline_queued")
            rows.append(
                measure(
                    sys.executable,
                    "forgeline",
                    store,
                    tasks=args.queued,
                    inflight=args.queued,
                    **kw,
                )
            )

    def others(store: str, url: str = "") -> None:
        if competitors_python is None:
            return
        for tool in COMPETITORS:
            db = fresh_database(url, f"bench_{tool}") if store == "postgres" else ""
            rows.append(
                measure(
                    competitors_python,
                    tool,
                    store,
                    url=db,
                    tasks=args.tasks,
                    inflight=args.inflight,
                    timeout=args.timeout,
                )
            )

    def raw(store: str, url: str = "") -> None:
        if args.no_raw:
            return
        python = competitors_python or sys.executable
        if store == "sqlite":
            rows.append(measure(python, "commits", "sqlite"))
            rows.append(measure(python, "plain-stage", "sqlite", tasks=args.serial_tasks or 200))
            rows.append(measure(python, "plain-task", "sqlite", tasks=args.serial_tasks or 200))
        else:
            rows.append(measure(python, "commits", "postgres", url=fresh_database(url, "raw")))

    started = time.perf_counter()
    for store in stores:
        print(f"{store}:", file=sys.stderr, flush=True)
        if store == "postgres":
            with postgres_cluster() as url:
                pg_version = postgres_version(url)
                raw(store, url)
                forgeline(store, url)
                others(store, url)
        else:
            raw(store)
            forgeline(store)
            others(store)

    baseline = {
        (r["store"], r["inflight"]): r["tasks_per_s"]
        for r in rows
        if r["tool"] == "forgeline" and not r.get("error")
    }
    versions = library_versions(competitors_python) if competitors_python else {}
    print()
    print(f"# Orchestration benchmark, {date.today().isoformat()}")
    print()
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite "
        f"{__import__('sqlite3').sqlite_version}"
        + (f", PostgreSQL {pg_version}" if pg_version else "")
        + (", " + ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "")
    )
    print(
        "Durable everywhere (SQLite WAL + synchronous=FULL, Postgres fsync +"
        " synchronous_commit on); six stages whose results are instant."
    )
    print()
    print(table(rows, baseline))
    print()
    print("What each persists:")
    print(persisted(rows))
    print()
    print("Targets:")
    print("\n".join(targets(rows, args)) or "- none measured")
    for note in notes:
        print(f"Note: {note}")
    incomplete = [
        r for r in rows if not r.get("error") and r.get("completed", 0) < r.get("tasks", 0)
    ]
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    failed = [r for r in rows if r.get("error")]
    return 1 if failed or incomplete else 0


if __name__ == "__main__":
    raise SystemExit(main())
