"""The six stages as an ``eventsourcing`` system: a ``Tasks`` application records each
task, and six process applications, one per stage, follow each other. Each stage records
its one event together with its tracking record (the position it processed) in one
transaction. ``MultiThreadedRunner``: one thread per application."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import STAGES, Clock, Result

PERSISTS = (
    "per stage one stored event (the stage's aggregate) plus a tracking row, in one "
    "transaction; plus the task's own created event"
)

_NAMESPACE = uuid.UUID("0d9b5f4e-7f62-4b8e-9a51-3c1c2a7e8f10")


def _system() -> tuple[Any, dict[str, threading.Event]]:
    from eventsourcing.application import Application, ProcessingEvent
    from eventsourcing.domain import Aggregate
    from eventsourcing.system import ProcessApplication, System

    done: dict[str, threading.Event] = {}

    class Task(Aggregate):
        def __init__(self, name: str) -> None:
            self.name = name

    class Step(Aggregate):
        def __init__(self, task: str, stage: str) -> None:
            self.task = task
            self.stage = stage

        @staticmethod
        def create_id(task: str, stage: str) -> uuid.UUID:
            return uuid.uuid5(_NAMESPACE, f"{task}/{stage}")

    class Tasks(Application):
        def submit(self, name: str) -> None:
            self.save(Task(name))

    def stage_app(stage: str, last: bool) -> type[ProcessApplication]:
        def policy(self: Any, domain_event: Any, processing_event: ProcessingEvent) -> None:
            task = getattr(domain_event, "name", None) or domain_event.task
            processing_event.collect_events(Step(task, stage))

        def _record(self: Any, processing_event: ProcessingEvent) -> Any:
            recordings = ProcessApplication._record(self, processing_event)
            for event in processing_event.events:
                waiter = done.get(event.task)
                if waiter is not None:
                    waiter.set()
            return recordings

        body: dict[str, Any] = {"policy": policy}
        if last:
            body["_record"] = _record
        return type(stage.capitalize(), (ProcessApplication,), body)

    apps = [stage_app(stage, i == len(STAGES) - 1) for i, stage in enumerate(STAGES)]
    return System(pipes=[[Tasks, *apps]]), done


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _drive(env: dict[str, str], result: Result, tasks: int, inflight: int) -> None:
    from eventsourcing.system import MultiThreadedRunner

    system, done = _system()
    with _environment(env):
        runner = MultiThreadedRunner(system)
        runner.start()
    try:
        app = runner.get(system.get_app_cls("Tasks"))
        latencies: list[float] = []
        completed = 0
        lock = threading.Lock()

        def one(n: int) -> None:
            nonlocal completed
            name = f"task-{n}"
            waiter = done[name] = threading.Event()
            started = time.perf_counter()
            app.submit(name)
            if waiter.wait(120):
                with lock:
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
        runner.stop()


def run_sqlite(directory: Path, tasks: int, inflight: int) -> Result:
    result = Result("eventsourcing", "sqlite", tasks, inflight, persists=PERSISTS)
    # The SQLite module names its tables the same for every application, so each gets a
    # database file of its own (the way eventsourcing expects it).
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_LOCK_TIMEOUT": "30"}
    for name in ("Tasks", *(stage.capitalize() for stage in STAGES)):
        env[f"{name.upper()}_SQLITE_DBNAME"] = str(directory / f"eventsourcing-{name}.db")
    _drive(env, result, tasks, inflight)
    result.note = (
        "MultiThreadedRunner, 7 applications (a database file each), WAL, synchronous=FULL"
    )
    return result


def run_postgres(url: str, tasks: int, inflight: int) -> Result:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    result = Result("eventsourcing", "postgres", tasks, inflight, persists=PERSISTS)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params["dbname"]),
        "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": "4",
    }
    _drive(env, result, tasks, inflight)
    result.note = "MultiThreadedRunner, 7 applications"
    return result
