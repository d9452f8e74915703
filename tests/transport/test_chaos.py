"""Chaos: 50 tasks on scripted models across 3 worker processes while workers are killed
(``kill -9``) every few seconds and replaced, the broker is restarted once and the relay
is killed once. Nothing may be lost or done twice.

A kill waits until some stage has finished since the one before. On a loaded machine a
stage (a test run, a commit) can take longer than the kill interval, and killing on a
clock alone then kills every stage before it ends: the test would measure the machine's
speed, not whether the transport loses or repeats work. For the same reason the test
fails when no task has moved for ``STALL`` seconds (work lost shows as a task that never
moves again), not after a fixed time: on a quiet machine it takes about three minutes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.core.events import task_stream, utcnow
from forgeline.transport.roster import workers
from tests.conftest import REPO, RabbitNode
from tests.scripts import todo_project
from tests.transport.conftest import purge, runtime, settings
from tests.transport.processes import interpreter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]

TASKS = 50
REPOSITORIES = 5
WORKERS = 3
KILL_EVERY = 5.0
STALL = 240.0
CONFIG = (
    "workspace_venv = false\n"
    + todo_project.CONFIG
    + """
[transport]
heartbeat = 2.0
backoff = 0.2
backoff_max = 2.0
"""
)


@pytest.fixture
def own_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


class Fleet:
    """Worker processes, started and killed by name."""

    def __init__(self, root: Path, config: Path, store: str, broker: str, logs: Path) -> None:
        self.root, self.config, self.store, self.broker, self.logs = (
            root, config, store, broker, logs,
        )  # fmt: skip
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def flags(self) -> list[str]:
        return [
            *("--store", self.store, "--broker", self.broker, "--root", str(self.root)),
            *("--config", str(self.config), "--unsafe-no-sandbox"),
        ]

    def start(self) -> str:
        self.started += 1
        name = f"w{self.started}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGELINE_", "TODO_"))}
        env["PYTHONPATH"] = os.pathsep.join((str(REPO / "src"), str(REPO)))
        with (self.logs / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [interpreter(), "-m", "forgeline", "worker", "--name", name, *self.flags()],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return name

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


async def test_chaos_loses_nothing_and_does_nothing_twice(
    tmp_path: Path, store_url: str, own_node: RabbitNode
) -> None:
    await purge(own_node.url)
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "logs").mkdir()
    config_file = tmp_path / "forgeline.toml"
    config_file.write_text(CONFIG)
    fleet = Fleet(root, config_file, store_url, own_node.url, tmp_path / "logs")
    rng = random.Random(15)
    kills = broker_restarts = relay_kills = 0
    started = time.monotonic()
    config = settings(root, store_url, own_node.url)
    try:
        for _ in range(WORKERS):
            fleet.start()
        async with runtime(config) as submitter:
            tasks: list[str] = []
            for i in range(TASKS):
                repo = root / f"repo{i % REPOSITORIES}"
                tasks.append(await submitter.submit(f"a todo CLI, number {i}", repo))
            store = submitter.store
            next_kill = time.monotonic() + KILL_EVERY
            at_last_kill: set[tuple[str, str, str]] = set()
            last_phases, moved = at_last_kill, time.monotonic()
            while True:
                rows = {row.id: row for row in await store.tasks()}
                done = sum(rows[t].status in ("completed", "failed") for t in tasks)
                # where every task stands: it moves only when a stage has finished
                phases = {(t, rows[t].status, rows[t].current_phase) for t in tasks}
                if done == TASKS:
                    break
                if phases != last_phases:
                    last_phases, moved = phases, time.monotonic()
                still = time.monotonic() - moved
                assert still < STALL, f"no task moved for {still:.0f} s; {done} of {TASKS} done"
                if broker_restarts == 0 and done >= TASKS // 3:
                    await asyncio.to_thread(own_node.stop)
                    await asyncio.sleep(2)
                    await asyncio.to_thread(own_node.start)
                    broker_restarts += 1
                elif relay_kills == 0 and done >= 2 * TASKS // 3:
                    relays = [
                        w.worker
                        for w in await workers(store, utcnow())
                        if w.relay and w.status == "alive" and w.worker in fleet.procs
                    ]
                    if relays:
                        fleet.kill(relays[0])
                        fleet.start()
                        relay_kills += 1
                elif time.monotonic() >= next_kill and phases != at_last_kill:
                    # a worker that has started serving (a fresh one still starting up
                    # on a loaded machine would die before it did anything)
                    serving = [
                        w.worker
                        for w in await workers(store, utcnow())
                        if w.status == "alive" and w.worker in fleet.procs
                    ]
                    if serving:
                        fleet.kill(rng.choice(sorted(serving)))
                        fleet.start()
                        kills += 1
                        next_kill = time.monotonic() + KILL_EVERY
                        at_last_kill = phases
                await asyncio.sleep(0.5)

            # every task completed, each stage's result once, versions contiguous. A task
            # may take a fix round (a test run cut short by a kill is not recorded, but one
            # starved under load may fail): the fault tests then name it, with its cause.
            fix_rounds: list[str] = []
            for task_id in tasks:
                events = await store.read_stream(task_stream(task_id))
                types = [e.type for e in events]
                state = await submitter.state(task_id)
                tested = [str(e.data)[:600] for e in events if e.type == "test.results"]
                assert state.status == "completed", (task_id, state.failure, types, tested)
                assert set(types) >= set(todo_project.EVENT_CHAIN), (task_id, types)
                results = Counter((e.type, e.causation_id) for e in events)
                assert max(results.values()) == 1, (task_id, results.most_common(1))
                assert [e.version for e in events] == list(range(1, len(events) + 1))
                if "fix.attempt" in types:
                    failed = next(e for e in events if e.type == "test.results")
                    fix_rounds.append(f"{task_id}: {str(failed.data)[:400]}")
                # no git commit made twice: one per changing stage and event, on the branch
                repo = root / state.repository
                log = git(
                    repo, "log", "--format=%H%n%B%x00", f"{state.base_commit}..{state.branch}"
                )
                causes = [
                    line.removeprefix("Event: ")
                    for entry in log.split("\x00")
                    for line in entry.splitlines()
                    if line.startswith("Event: ")
                ]
                repeated = [c for c, n in Counter(causes).items() if n > 1]
                assert not repeated, (task_id, repeated)
                assert len(causes) >= 4, (task_id, causes)  # plan, ADR, two plan items
                assert git(repo, "rev-parse", state.branch).strip() == state.head
    finally:
        fleet.stop_all()
    seconds = time.monotonic() - started
    print(
        f"\nchaos: {TASKS} tasks completed in {seconds:.0f} s on {fleet.started} worker "
        f"processes, surviving {kills} kill -9s of a random worker, {relay_kills} of the "
        f"relay and {broker_restarts} broker restart(s); {len(fix_rounds)} took a fix round"
    )
    for line in fix_rounds:
        print(f"  fix round: {line}")
    assert kills >= 3 and relay_kills == 1 and broker_restarts == 1
