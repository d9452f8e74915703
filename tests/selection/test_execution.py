"""Candidates run in the sandbox, with a venv's pytest, as the pipeline will run them."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.selection.candidate import Candidate
from forgeline.selection.execution import CandidateRunner, build_suite
from forgeline.spec import derive_spec
from forgeline.workspace.venv import ensure_venv

REQUEST = "Write add.py with add(a, b). add(2, 3) == 5. `python add.py 2 3` prints 5."
PROGRAM = (
    "import sys\n\n\ndef add(a, b):\n    return a + b\n\n\n"
    'if __name__ == "__main__":\n    print(add(int(sys.argv[1]), int(sys.argv[2])))\n'
)


@pytest.mark.sandbox
async def test_a_candidate_runs_sandboxed_and_leaves_nothing(tmp_path: Path) -> None:
    venv = await ensure_venv(tmp_path / "repo")
    scratch = tmp_path / "scratch"
    runner = CandidateRunner(BwrapSandbox(), venv=venv, scratch=scratch, timeout=120)
    spec = derive_spec(REQUEST)
    test = "from add import add\n\n\ndef test_add():\n    assert add(1, 1) == 2\n"
    hidden = {"test_hidden_add.py": test}
    suite = build_suite(spec, extra=hidden)
    files = {"add.py": PROGRAM, "test_add.py": "def test_own():\n    assert False\n"}
    good = await runner.evaluate(Candidate(files=files), suite)
    assert good.spec_ok and good.spec_total == 5
    assert good.extra_ok is True  # the candidate's own failing test is never run
    bad = await runner.evaluate(
        Candidate(files={"add.py": PROGRAM.replace("a + b", "a - b")}), suite
    )
    assert bad.spec_failed == (
        "test_spec_examples.py::test_example_1",
        "test_spec_examples.py::test_example_2",
    )
    assert bad.extra_ok is False
    assert list(scratch.iterdir()) == []
