"""A tiny run of the orchestration benchmark (forgeline alone, SQLite): the table comes
out, every task completes, and the figures are plausible. The full benchmark is run by
hand: ``python -m benchmarks.orchestration``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_small_forgeline_run_prints_its_table(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.orchestration",
            "--store",
            "sqlite",
            "--only",
            "forgeline",
            "--tasks",
            "20",
            "--inflight",
            "5",
            "--serial-tasks",
            "5",
            "--queued",
            "30",
            "--no-raw",
            "--json",
            str(rows_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| tool | store | tasks | in flight | done | tasks/s |" in out
    assert "competitors skipped (--only forgeline)" in out
    assert "Targets:" in out

    rows = json.loads(rows_file.read_text())
    assert [(r["tool"], r["tasks"], r["inflight"]) for r in rows] == [
        ("forgeline", 20, 5),
        ("forgeline", 5, 1),
        ("forgeline", 30, 30),
    ]
    for row in rows:
        assert row["error"] == ""
        assert row["completed"] == row["tasks"]  # every task reached task.completed
        assert 0 < row["tasks_per_s"] < 1_000_000
        assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] < 120_000
        assert row["dispatch_p99_ms"] is not None and row["dispatch_p99_ms"] >= 0
        assert 10 < row["peak_rss_mb"] < 4096
        assert row["cpu_ms_per_task"] > 0
        assert f"| forgeline | sqlite | {row['tasks']} | {row['inflight']} |" in out
