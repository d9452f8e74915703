"""A scan finds every kind of signal in a committed tree, with the repository's venv (ruff,
mypy and coverage seeded from forgeline's own), in the sandbox and without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.config import Settings
from forgeline.core.evolution import rank
from forgeline.evolve.scan import Scanner
from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import ProcessSpawner
from forgeline.workspace.venv import WorkspaceVenv
from tests.evolve import project

TYPED = 'def answer() -> int:\n    return "forty-two"\n'
TODO = "def later():\n    # TODO: handle negative numbers\n    return 0\n"
PYPROJECT = '[tool.mypy]\nfiles = ["typed.py"]\n'
GOALS = """# Goals
- Add a `subtract(a, b)` function to calc.py.
  module: calc.py
  priority: 9
- Document the modules in a README. (priority: 4)
"""


def repository(tmp_path: Path) -> Path:
    repo = project.make_repository(
        tmp_path,
        **{
            "typed.py": TYPED,
            "later.py": TODO,
            "pyproject.toml": PYPROJECT,
            "test_typed.py": "from typed import answer\n\n\ndef test_it():\n    answer()\n",
        },
    )
    (repo / ".forgeline").mkdir()
    (repo / ".forgeline" / "goals.md").write_text(GOALS)
    (repo / "calc.py").write_text(project.FIXED_CALC)  # a person's edit, not committed
    return repo


async def scan(repo: Path, spawner: ProcessSpawner):  # type: ignore[no-untyped-def]
    settings = Settings(workspaces_root=repo.parent)
    commit = project.git(repo, "rev-parse", "HEAD").strip()
    return await Scanner(repo, settings, spawner).scan(commit)


def check(found, repo: Path) -> None:  # type: ignore[no-untyped-def]
    by_fingerprint = {s.fingerprint: s for s in found.signals}
    assert sorted(by_fingerprint) == sorted(
        [
            "test:test_calc.py",
            "lint:util.py",
            "type:typed.py",
            "todo:later.py:" + by_fingerprint_suffix(by_fingerprint, "todo:later.py:"),
            "coverage:later.py",
            *[f for f in by_fingerprint if f.startswith("goal:")],
        ]
    )
    assert len([f for f in by_fingerprint if f.startswith("goal:")]) == 2
    # The scan read the commit, not the person's uncommitted fix.
    failing = by_fingerprint["test:test_calc.py"]
    assert failing.target_module == "calc.py"
    assert "test_calc.py::test_add" in failing.request and "assert" in failing.request
    assert "util.py:1:8 F401" in by_fingerprint["lint:util.py"].request
    assert "typed.py:2" in by_fingerprint["type:typed.py"].request
    todo = next(s for s in found.signals if s.kind == "todo")
    assert "later.py (line 2)" in todo.request and "negative numbers" in todo.request
    assert "later (line 1)" in by_fingerprint["coverage:later.py"].request
    goals = {s.target_module: s for s in found.signals if s.kind == "goal"}
    assert goals["calc.py"].given == {"target_module": "calc.py", "priority": "9"}
    assert goals["."].priority == 4
    counts = found.counts
    assert (counts.failing_tests, counts.passing_tests, counts.lint_findings) == (1, 3, 1)
    assert (counts.type_errors, counts.todos, counts.uncovered_functions) == (1, 1, 1)
    assert found.notes == ()
    assert "test_calc.py::test_add_zero" in found.passing
    # The ranking rule: failing tests, then goals (the person's 9 before the default),
    # type errors, lint, TODOs, uncovered functions.
    assert [s.kind for s in rank(found.signals)] == [
        "test", "goal", "type", "lint", "goal", "todo", "coverage"
    ]  # fmt: skip
    # The person's checkout is as it was, and the tools are in the repository's venv.
    assert project.git(repo, "status", "--porcelain") == " M calc.py\n"
    bin_dir = WorkspaceVenv.of(repo).path / "bin"
    assert (bin_dir / "ruff").is_file()


def by_fingerprint_suffix(signals: dict[str, object], prefix: str) -> str:
    return next(f for f in signals if f.startswith(prefix)).removeprefix(prefix)


async def test_a_scan_finds_every_kind_of_signal(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    check(await scan(repo, LocalSpawner()), repo)


@pytest.mark.sandbox
@pytest.mark.usefixtures("bwrap_ready")
async def test_a_scan_runs_its_tools_in_the_sandbox(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    check(await scan(repo, BwrapSandbox()), repo)
