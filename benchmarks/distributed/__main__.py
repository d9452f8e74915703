"""``python -m benchmarks.distributed``: tasks/s of forgeline's distributed mode (Postgres
store + RabbitMQ, 1, 2 and 4 ``forgeline worker`` processes) next to the embedded mode
(one process, SQLite and Postgres), on instant agents and on agents whose six stages
each wait 200 ms as a model call would.

The servers are throwaway: a Postgres cluster (``scripts/postgres.sh``) and a RabbitMQ
node (``scripts/rabbitmq.sh``), started here and stopped by their PIDs at the end, unless
``--postgres-url``/``--broker-url`` name running ones. Every run gets a fresh database
and empty queues; the worker processes are started before a run's clock starts (each has
recorded its first heartbeat and one holds the relay lease) and stopped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import aio_pika

from forgeline.core.events import utcnow
from forgeline.store import open_store
from forgeline.transport.broker import queue_names
from forgeline.transport.config import TransportConfig
from forgeline.transport.roster import workers as roster

from ..orchestration.__main__ import (
    _fmt,
    fresh_database,
    postgres_cluster,
    postgres_version,
    script_server,
)
from . import flow

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_SCRIPT = ROOT / "scripts" / "rabbitmq.sh"

# The targets: with sleeping agents, N workers at least this many times one.
TARGETS = {2: 1.8, 4: 3.2}

Row = dict[str, Any]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed",
        description="tasks/s of distributed mode (Postgres + RabbitMQ, N worker processes) "
        "next to embedded mode, on instant and on sleeping agents.",
    )
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument(
        "--agents", choices=("instant", "sleeping", "both"), default="both", help="which runs"
    )
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds a sleeping stage takes")
    parser.add_argument("--instant-tasks", type=int, default=300, help="tasks per instant run")
    parser.add_argument(
        "--sleeping-tasks",
        type=int,
        default=30,
        help="tasks per worker process in a sleeping run (the embedded runs get as many as "
        "the most workers)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=TransportConfig().concurrency,
        help="messages each worker process handles at once ([transport] concurrency)",
    )
    parser.add_argument(
        "--embedded-concurrency",
        type=int,
        default=4,
        help="events each embedded stage worker handles at once (SharedWorkers' default)",
    )
    parser.add_argument("--embedded", default="sqlite,postgres", help="embedded stores, or ''")
    parser.add_argument("--postgres-url", default="", help="a running Postgres (else started)")
    parser.add_argument("--broker-url", default="", help="a running RabbitMQ (else started)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    parser.add_argument(
        "--profile", default="", help="a directory for a cProfile of each worker process"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- servers


@contextmanager
def rabbitmq_node() -> Iterator[str]:
    """A throwaway RabbitMQ node (with its own epmd); yields its URL."""
    with script_server(RABBITMQ_SCRIPT, "a RabbitMQ node") as url:
        yield url


@contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    with (
        contextlib_nullable(args.postgres_url, postgres_cluster) as pg,
        contextlib_nullable(args.broker_url, rabbitmq_node) as broker,
    ):
        yield pg, broker


@contextmanager
def contextlib_nullable(given: str, start: Any) -> Iterator[str]:
    """``given`` when set, else what ``start()`` yields (and stops afterwards)."""
    if given:
        yield given
    else:
        with start() as url:
            yield url


async def empty_queues(url: str) -> None:
    """Delete forgeline's queues: a run starts with none of an earlier run's messages."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in queue_names(TransportConfig().max_attempts):
            await channel.queue_delete(name)
    finally:
        await connection.close()


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` (a run's), so a long-lived server keeps none."""
    import psycopg

    name = url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_store(url: str) -> None:
    """Create the store's schema before the workers race to."""
    store = open_store(url)
    await store.open()
    await store.close()


# ---------------------------------------------------------------------- workers


class Fleet:
    """``count`` worker processes serving one store and broker."""

    def __init__(
        self,
        count: int,
        store: str,
        broker: str,
        root: Path,
        sleep: float,
        concurrency: int,
        profile: Path | None = None,
    ) -> None:
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for n in range(1, count + 1):
            command = [
                *(sys.executable, "-m", "benchmarks.distributed.worker"),
                *("--store", store, "--broker", broker, "--root", str(root)),
                *("--sleep", str(sleep), "--concurrency", str(concurrency), "--name", f"w{n}"),
            ]
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                command += ["--profile", str(profile / f"{int(sleep * 1000)}ms-{count}w{n}.prof")]
            with (self.logs / f"w{n}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    async def ready(self, store_url: str, timeout: float) -> None:
        """Wait until every worker has recorded a heartbeat and one is the relay."""
        store = open_store(store_url, create=False)
        await store.open()
        try:
            deadline = time.monotonic() + timeout
            while True:
                seen = [w for w in await roster(store, utcnow()) if w.status == "alive"]
                if len(seen) >= len(self.procs) and any(w.relay for w in seen):
                    return
                if dead := [n for n, p in enumerate(self.procs, 1) if p.poll() is not None]:
                    raise RuntimeError(f"worker w{dead[0]} exited at start; {self.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not ready within {timeout:g} s; {self.tail()}")
                await asyncio.sleep(0.2)
        finally:
            await store.close()

    def cpu_seconds(self) -> float:
        """Processor time the worker processes have used so far (Linux /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def tail(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("w*.log")):
            lines = log.read_text(errors="replace").strip().splitlines()[-8:]
            parts.append(f"{log.name}: " + " | ".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- runs


def row(
    agents: str, mode: str, store: str, workers: int, outcome: flow.Outcome, **extra: Any
) -> Row:
    return {
        "agents": agents,
        "mode": mode,
        "store": store,
        "workers": workers,
        "tasks": outcome.tasks,
        "completed": outcome.completed,
        "seconds": round(outcome.seconds, 2),
        "tasks_per_s": round(outcome.rate, 2),
        "latency_p50_ms": outcome.p50_ms(),
        "error": outcome.error,
        **extra,
    }


def run_embedded(
    args: argparse.Namespace, agents: str, store: str, pg: str, tasks: int, sleep: float
) -> Row:
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-emb-"))
    url = (
        fresh_database(pg, f"bench_emb_{agents}")
        if store == "postgres"
        else f"sqlite:///{work / 'forgeline.db'}"
    )
    try:
        cpu = time.process_time()
        outcome = asyncio.run(
            flow.embedded(url, work, tasks, sleep, args.embedded_concurrency, args.timeout)
        )
        cpu = time.process_time() - cpu
    except Exception as exc:  # the row says what failed; the other runs go on
        outcome, cpu = flow.Outcome(tasks, error=f"{type(exc).__name__}: {exc}"), 0.0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if store == "postgres":
            drop_database(pg, url)
    return row(
        agents,
        "embedded",
        store,
        1,
        outcome,
        cpu_ms_per_task=_per_task(cpu, outcome),
        note=f"one process, SharedWorkers concurrency {args.embedded_concurrency}",
    )


def run_distributed(
    args: argparse.Namespace,
    agents: str,
    count: int,
    pg: str,
    broker: str,
    tasks: int,
    sleep: float,
) -> Row:
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-dist-"))
    url = fresh_database(pg, f"bench_dist_{agents}_{count}")
    asyncio.run(empty_queues(broker))
    asyncio.run(create_store(url))
    profile = Path(args.profile).resolve() if args.profile else None
    fleet = Fleet(count, url, broker, work, sleep, args.concurrency, profile)
    try:
        asyncio.run(fleet.ready(url, timeout=120))
        cpu = fleet.cpu_seconds()
        own = time.process_time()
        outcome = asyncio.run(flow.distributed(url, broker, work, tasks, args.timeout))
        cpu = fleet.cpu_seconds() - cpu
        own = time.process_time() - own
    except Exception as exc:  # the row says what failed; the other runs go on
        outcome, cpu, own = flow.Outcome(tasks, error=f"{type(exc).__name__}: {exc}"), 0.0, 0.0
    finally:
        fleet.stop()
        shutil.rmtree(work, ignore_errors=True)
        drop_database(pg, url)
    return row(
        agents,
        "distributed",
        "postgres",
        count,
        outcome,
        cpu_ms_per_task=_per_task(cpu, outcome),
        submitter_cpu_ms_per_task=_per_task(own, outcome),
        note=f"{count} worker process(es), concurrency {args.concurrency} each",
    )


def _per_task(cpu: float, outcome: flow.Outcome) -> float | None:
    return round(cpu * 1000 / outcome.completed, 1) if outcome.completed else None


# ---------------------------------------------------------------------- report


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| agents | mode | store | workers | tasks | done | tasks/s | vs 1 worker "
        "| p50 ms | worker CPU ms/task |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        scale = r.get("scaling")
        lines.append(
            f"| {r['agents']} | {r['mode']} | {r['store']} | {r['workers']} | "
            f"{_fmt(r['tasks'])} | {_fmt(r['completed'])} | {_fmt(r['tasks_per_s'], 2)} | "
            f"{_fmt(scale, 2) + 'x' if scale is not None else '-'} | "
            f"{_fmt(r['latency_p50_ms'], 0)} | {_fmt(r.get('cpu_ms_per_task'))} |"
        )
    return "\n".join(lines)


def add_scaling(rows: list[Row]) -> None:
    """Each distributed row's rate over the one-worker rate of the same agents."""
    for r in rows:
        if r["mode"] != "distributed":
            continue
        one = next(
            (
                o
                for o in rows
                if o["mode"] == "distributed" and o["agents"] == r["agents"] and o["workers"] == 1
            ),
            None,
        )
        if one and one["tasks_per_s"] and r["tasks_per_s"]:
            r["scaling"] = round(r["tasks_per_s"] / one["tasks_per_s"], 2)


def targets(rows: Sequence[Row]) -> list[str]:
    lines = []
    for count, goal in TARGETS.items():
        found = next(
            (
                r
                for r in rows
                if r["agents"] == "sleeping"
                and r["mode"] == "distributed"
                and r["workers"] == count
            ),
            None,
        )
        if found is None or found.get("scaling") is None:
            lines.append(f"- sleeping agents, {count} workers ≥ {goal}x one worker: not measured")
            continue
        verdict = "met" if found["scaling"] >= goal else "NOT met"
        lines.append(
            f"- sleeping agents, {count} workers ≥ {goal}x one worker: "
            f"{found['scaling']:.2f}x ({verdict})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    embedded = [s for s in args.embedded.split(",") if s.strip()]
    for store in embedded:
        if store not in ("sqlite", "postgres"):
            raise SystemExit(f"--embedded takes sqlite and/or postgres, not {store!r}")
    kinds = ("instant", "sleeping") if args.agents == "both" else (args.agents,)
    began = time.monotonic()
    load_before = os.getloadavg()
    rows: list[Row] = []
    with servers(args) as (pg, broker):
        pg_version = postgres_version(pg)
        for agents in kinds:
            sleep = args.sleep if agents == "sleeping" else 0.0
            if agents == "instant":
                per_count = {n: args.instant_tasks for n in counts}
                embedded_tasks = args.instant_tasks
            else:
                per_count = {n: args.sleeping_tasks * n for n in counts}
                embedded_tasks = args.sleeping_tasks * max(counts, default=1)
            for store in embedded:
                rows.append(run_embedded(args, agents, store, pg, embedded_tasks, sleep))
                print(f"# {_brief(rows[-1])}", file=sys.stderr, flush=True)
            for count in counts:
                rows.append(
                    run_distributed(args, agents, count, pg, broker, per_count[count], sleep)
                )
                print(f"# {_brief(rows[-1])}", file=sys.stderr, flush=True)
    add_scaling(rows)
    load_after = os.getloadavg()
    print(
        f"forgeline distributed benchmark, {date.today().isoformat()}: Python "
        f"{platform.python_version()}, PostgreSQL {pg_version}, {os.cpu_count()} cores; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{time.monotonic() - began:.0f} s in all"
    )
    print(
        f"sleeping agents: six stages of {args.sleep * 1000:.0f} ms each; worker concurrency "
        f"{args.concurrency}, embedded concurrency {args.embedded_concurrency} per stage"
    )
    print()
    print(table(rows))
    print()
    print("Targets:")
    print("\n".join(targets(rows)))
    failed = [r for r in rows if r["error"]]
    for r in failed:
        print(f"error: {r['agents']} {r['mode']} {r['workers']}: {r['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


def _brief(r: Row) -> str:
    where = f"{r['workers']} worker(s)" if r["mode"] == "distributed" else r["store"]
    text = f"{r['agents']} {r['mode']} {where}: {r['completed']}/{r['tasks']} in {r['seconds']} s"
    return text + (f" ({r['error']})" if r["error"] else "")


if __name__ == "__main__":
    raise SystemExit(main())
