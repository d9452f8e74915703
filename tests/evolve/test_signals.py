"""The signal sources that need no tool: goals, markers, which module a test tests."""

from __future__ import annotations

from pathlib import Path

from forgeline.evolve.signals.goals import goals, parse_goals
from forgeline.evolve.signals.markers import todo_markers
from forgeline.evolve.signals.probe import Probe, module_under_test
from forgeline.sandbox.local import LocalSpawner


def test_goals_are_list_items_with_their_priority_and_module() -> None:
    text = """# Goals
Some prose that is not a goal.

- Add a --json option
  to the list command.
  priority: 9
  module: todo.py
* Explain the format. (priority: 4, module: README.md)
1. Speed it up.
- (priority: 3)
"""
    assert parse_goals(text) == [
        ("Add a --json option to the list command.", {"priority": "9", "module": "todo.py"}),
        ("Explain the format.", {"priority": "4", "module": "README.md"}),
        ("Speed it up.", {}),
    ]


def test_a_goal_signal_passes_what_the_person_wrote_on_to_the_task(tmp_path: Path) -> None:
    path = tmp_path / "goals.md"
    path.write_text("- Faster. (priority: urgent)\n- Smaller.\n")
    found = goals(path)
    assert found.count == 2
    faster, smaller = found.signals
    assert faster.given == {"priority": "urgent"} and faster.target_module == "."
    assert smaller.given == {} and smaller.priority == 8
    assert faster.fingerprint != smaller.fingerprint
    assert goals(tmp_path / "none.md").signals == []


def test_markers_in_tracked_source_files_one_signal_each(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1  # TODO: name this\n\n# FIXME(ada) breaks on 0\n")
    (tmp_path / "notes.md").write_text("TODO: prose is not code\n")
    (tmp_path / "b.py").write_text("TODOLIST = []  # not a marker\n")
    probe = Probe(
        root=tmp_path, files=("a.py", "notes.md", "b.py"), spawner=LocalSpawner(), venv=None
    )
    found = todo_markers(probe)
    assert [s.locations for s in found.signals] == [("a.py:1",), ("a.py:3",)]
    assert found.count == 2
    assert len({s.fingerprint for s in found.signals}) == 2


def test_a_failing_test_points_at_the_module_it_tests() -> None:
    files = ["src/pkg/calc.py", "tests/test_calc.py", "tests/calc.py", "x.py"]
    assert module_under_test("tests/test_calc.py", files) == "src/pkg/calc.py"  # not a test
    deeper = ["a/b/calc.py", "a/calc.py"]
    assert module_under_test("tests/test_calc.py", deeper) == "a/calc.py"  # the shortest
    assert module_under_test("pkg/test_x.py", ["pkg/x.py", "x.py"]) == "pkg/x.py"
    assert module_under_test("x_test.py", ["x.py"]) == "x.py"
    assert module_under_test("test_nothing.py", files) == "test_nothing.py"
