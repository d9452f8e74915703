"""The evolution loop end to end on scripted models: a cycle finds a failing test and a
lint finding, the pipeline fixes them on task branches, the change tracker records each
change with the hash of its committed diff, and only an approval merges one."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.core.events import EVOLVE_STREAM, CycleCompleted, CycleRecorded
from forgeline.evolve.daemon import EvolutionDaemon
from forgeline.evolve.reads import change_views, load_changes
from tests.evolve import project
from tests.evolve.harness import (
    cli_async,
    diff_sha256,
    evolve_config,
    evolving,
    pytest_in,
    within,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


async def test_a_cycle_fixes_a_failing_test_on_a_branch_and_only_approval_merges_it(
    tmp_path: Path,
) -> None:
    repo = project.make_repository(tmp_path)
    main_before = project.git(repo, "rev-parse", "main").strip()
    async with evolving(repo, evolve=evolve_config()) as runtime:
        daemon = EvolutionDaemon(runtime, repo)
        await within(daemon.run(once=True))

        changes = await load_changes(runtime.store)
        by_kind = {c.task.patch_definition.kind: c for c in changes if c.task}
        assert sorted(by_kind) == ["lint", "test"]  # two tasks from the two signals
        assert by_kind["test"].target_module == "calc.py"
        assert by_kind["lint"].target_module == "util.py"
        assert [c.status for c in changes] == ["completed", "completed"], [
            (c.change_id, c.error_log) for c in changes
        ]
        fixed = by_kind["test"]
        assert fixed.task_id is not None and fixed.commit is not None
        # The failing test is fixed on the task's branch ...
        worktree = runtime.workspaces.worktree_path("proj", fixed.task_id)
        assert project.git(repo, "show", f"{fixed.commit}:calc.py") == project.FIXED_CALC
        assert project.git(repo, "rev-parse", f"forgeline/{fixed.task_id}").strip() == fixed.commit
        assert pytest_in(worktree).returncode == 0
        # ... the tracker recorded it completed with the sha256 of its committed diff ...
        assert fixed.generated_hash == diff_sha256(repo, fixed.base_commit, fixed.commit)
        assert fixed.base_commit == main_before
        assert "calc.py" in fixed.files
        assert fixed.after is not None and fixed.after.failing_tests == 0
        assert fixed.regressions == ()
        # ... and nothing reached main.
        assert project.git(repo, "rev-parse", "main").strip() == main_before
        assert project.git(repo, "show", "main:calc.py") == project.CALC

        # The cycle recorded what it found, and completed once its changes settled.
        log = [e.data for e in await runtime.store.read_stream(EVOLVE_STREAM)]
        [first] = [d for d in log if isinstance(d, CycleRecorded)]
        assert (first.counts.failing_tests, first.counts.lint_findings) == (1, 1)
        assert first.counts.todos == first.counts.uncovered_functions == 0
        assert sorted(first.proposed) == sorted(c.change_id for c in changes)
        assert [d.cycle for d in log if isinstance(d, CycleCompleted)] == [first.cycle]

        # A second cycle finds the same signals on main, both answered: it creates nothing.
        second = await within(daemon.cycle())
        assert (second.proposed, second.rejected) == ((), ())
        assert {s.reason.split(" by ")[0] for s in second.skipped} == {"already answered"}
        assert len(await load_changes(runtime.store)) == 2

    # A person approves the test fix: it is merged, and the tests pass on main.
    shown = await cli_async("changes", "show", fixed.change_id, "--workspace", str(repo))
    assert shown.exit_code == 0, shown.output
    assert fixed.generated_hash in shown.output
    approved = await cli_async("changes", "approve", fixed.change_id, "--workspace", str(repo))
    assert approved.exit_code == 0, approved.output
    assert project.git(repo, "show", "main:calc.py") == project.FIXED_CALC
    assert pytest_in(repo).returncode == 0
    listed = await cli_async("changes", "--status", "merged", "--workspace", str(repo))
    assert fixed.change_id in listed.output and by_kind["lint"].change_id not in listed.output
    async with evolving(repo) as runtime:
        [view] = await change_views(runtime.store, status=["merged"])
        assert (view.change_id, view.approved_by) == (fixed.change_id, "person")
