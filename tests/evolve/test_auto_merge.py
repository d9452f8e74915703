"""Auto-merge, when opted in: a change whose tests and review pass and that breaks no test
that passed before is merged by the daemon; one that drops a passing test is not."""

from __future__ import annotations

from pathlib import Path

from forgeline.evolve.daemon import EvolutionDaemon
from forgeline.evolve.reads import load_changes
from forgeline.llm.scripted import scripted_model
from tests.evolve import project
from tests.evolve.harness import evolve_config, evolving, pytest_in, within


async def test_auto_merge_merges_a_change_that_breaks_nothing(tmp_path: Path) -> None:
    repo = project.make_repository(tmp_path)
    config = evolve_config(signals=("test",), auto_merge=True)
    async with evolving(repo, evolve=config) as runtime:
        await within(EvolutionDaemon(runtime, repo).run(once=True))
        [change] = await load_changes(runtime.store)
    assert (change.status, change.approved_by) == ("merged", "auto-merge")
    assert project.git(repo, "show", "main:calc.py") == project.FIXED_CALC
    assert project.git(repo, "rev-parse", "main").strip() == change.merged_commit
    assert pytest_in(repo).returncode == 0


async def test_auto_merge_leaves_a_change_that_drops_a_passing_test(tmp_path: Path) -> None:
    repo = project.make_repository(tmp_path)
    main_before = project.git(repo, "rev-parse", "main").strip()
    models = project.models() | {
        "planner": scripted_model([project.plan_with_tests]),
        "coder": scripted_model([project.code_dropping_a_test]),
    }
    config = evolve_config(signals=("test",), auto_merge=True)
    async with evolving(repo, models, evolve=config) as runtime:
        await within(EvolutionDaemon(runtime, repo).run(once=True))
        [change] = await load_changes(runtime.store)
    assert change.status == "completed"  # its tests passed: it is the person's call
    assert change.regressions == ("test_calc.py::test_add_zero",)
    assert project.git(repo, "rev-parse", "main").strip() == main_before
