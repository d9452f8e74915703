"""A tiny run of the distributed benchmark on the session's Postgres and RabbitMQ: every
run's tasks complete, through real worker processes, and the table comes out. The full
benchmark is run by hand: ``python -m benchmarks.distributed``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, RabbitNode
from tests.transport.conftest import purge

pytestmark = pytest.mark.postgres


async def test_a_small_distributed_run_prints_its_table(
    tmp_path: Path, postgres_url: str, rabbitmq_node: RabbitNode
) -> None:
    rows_file = tmp_path / "rows.json"
    command = [
        *(sys.executable, "-m", "benchmarks.distributed"),
        *("--workers", "1,2", "--instant-tasks", "4", "--sleeping-tasks", "2"),
        *("--sleep", "0.02", "--embedded", "sqlite", "--timeout", "120"),
        *("--postgres-url", postgres_url, "--broker-url", rabbitmq_node.url),
        *("--json", str(rows_file)),
    ]
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=280, check=False
        )
    finally:
        await purge(rabbitmq_node.url)  # leave no queue behind for the transport tests
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "| agents | mode | store | workers | tasks | done | tasks/s | vs 1 worker |" in out
    assert "Targets:" in out
    assert "2 workers ≥ 1.8x one worker:" in out

    rows = json.loads(rows_file.read_text())
    assert [(r["agents"], r["mode"], r["store"], r["workers"], r["tasks"]) for r in rows] == [
        ("instant", "embedded", "sqlite", 1, 4),
        ("instant", "distributed", "postgres", 1, 4),
        ("instant", "distributed", "postgres", 2, 4),
        ("sleeping", "embedded", "sqlite", 1, 4),
        ("sleeping", "distributed", "postgres", 1, 2),
        ("sleeping", "distributed", "postgres", 2, 4),
    ]
    for row in rows:
        assert row["error"] == ""
        assert row["completed"] == row["tasks"]  # every task reached task.completed
        assert row["tasks_per_s"] > 0
        assert row["cpu_ms_per_task"] > 0  # the work was done where the row says
        if row["mode"] == "distributed":
            assert row["scaling"] > 0
        if row["agents"] == "sleeping":  # six stages of 20 ms each, one after the other
            assert row["latency_p50_ms"] >= 6 * 20
