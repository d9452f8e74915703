"""The candidate-pool harness on a scripted model (``benchmarks/agents/pool_script.py``):
collect stores every answer, replay runs every selection method on it with pytest alone
and counts the way the README says."""

from __future__ import annotations

import json
import subprocess
import sys
from math import comb
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = "function:benchmarks.agents.pool_script:model"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.agents.pool", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_collect_then_replay(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    done = run("collect", "--model", SCRIPTED, "--only", "slugify,wrapper", "--out", str(pool))
    assert done.returncode == 0, done.stdout + done.stderr
    stored = json.loads((pool / "slugify.json").read_text())
    assert len(stored["samples"]) == 8 and len(stored["designed"]) == 3
    assert [c["answer"]["seed"] for c in stored["samples"]] == list(range(1, 9))
    assert {c["answer"]["temperature"] for c in stored["samples"]} == {0.7}
    assert stored["greedy"]["answer"]["temperature"] == 0.0
    assert len(stored["repairs"]) == 1  # the five broken samples are one and the same
    again = run("collect", "--model", SCRIPTED, "--only", "slugify", "--out", str(pool))
    assert "slugify: already collected" in again.stdout

    figures = tmp_path / "replay.json"
    done = run("replay", str(pool), "--bootstrap", "200", "--json", str(figures))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| request | set | pass@1 | pass@5 | greedy |" in done.stdout
    assert "tuned (1 requests): pass@1 38%, pass@5 98%" in done.stdout
    assert "held-out (1 requests)" in done.stdout
    data = json.loads(figures.read_text())
    rows = {r["name"]: r for r in data["requests"]}
    slug = rows["slugify"]
    assert (slug["samples"], slug["right_samples"]) == (8, 3)
    assert slug["pass@1"] == 3 / 8
    assert slug["pass@5"] == 1 - comb(5, 5) / comb(8, 5)
    assert slug["greedy"] == 1.0
    assert slug["reference_spec_ok"] is True
    assert slug["designer_accuracy"] == 0.5  # the script's second set is wrong
    # the spec's example catches the broken samples: only draws without a right one miss
    assert 0.9 <= slug["spec"] == slug["agreement"] < 1.0
    assert slug["repair"] == 1.0  # the fresh repair fixes the rest
    assert slug["pick_when_any"] == 1.0
    assert slug["tokens"]["repair"] > slug["tokens"]["agreement"] > slug["tokens"]["greedy"]
    assert (pool / "slugify.eval.json").is_file()  # a second replay needs no test run
