"""What goes wrong in a cycle ends recorded with its reason, and the loop goes on: an
invalid RSITask, a change whose tests still fail, a budget that runs out."""

from __future__ import annotations

from pathlib import Path

from forgeline.core.events import Budget
from forgeline.evolve.daemon import EvolutionDaemon
from forgeline.evolve.reads import load_change, load_changes
from tests.evolve import project
from tests.evolve.harness import evolve_config, evolving, within

STILL_WRONG = project.CALC.replace("a - b", "a * b")


async def test_an_invalid_task_and_a_change_whose_tests_still_fail_end_failed(
    tmp_path: Path,
) -> None:
    repo = project.make_repository(tmp_path)
    (repo / ".forgeline").mkdir()
    (repo / ".forgeline" / "goals.md").write_text(
        "# Goals\n- Make every function twice as fast.\n  priority: 11\n"
    )
    main_before = project.git(repo, "rev-parse", "main").strip()
    config = evolve_config(signals=("test", "goal"))
    models = project.models(calc=STILL_WRONG)
    async with evolving(repo, models, evolve=config, max_fix_rounds=1) as runtime:
        daemon = EvolutionDaemon(runtime, repo)
        await within(daemon.run(once=True))
        changes = {c.fingerprint.split(":")[0]: c for c in await load_changes(runtime.store)}

        goal = changes["goal"]  # rejected with pydantic's reason, never run
        assert goal.status == "failed" and goal.task_id is None
        assert goal.error_log is not None
        assert "priority" in goal.error_log and "less than or equal to 10" in goal.error_log

        tests = changes["test"]  # its tests still fail after the fix round
        assert tests.status == "failed" and tests.task_id is not None
        assert tests.error_log is not None and "test_calc.py::test_add" in tests.error_log
        assert (await runtime.state(tests.task_id)).status == "failed"
        assert project.git(repo, "rev-parse", "main").strip() == main_before

        # The loop goes on: the next cycle is recorded; calc.py rests after its failure,
        # and the goal, tried and failed, is tried once more and then left to a person.
        second = await within(daemon.cycle())
        assert second.cycle == goal.cycle + 1
        reasons = {s.fingerprint.split(":")[0]: s.reason for s in second.skipped}
        assert reasons["test"].startswith("calc.py is cooling down")
        assert len(second.rejected) == 1
        third = await within(daemon.cycle())
        reasons = {s.fingerprint.split(":")[0]: s.reason for s in third.skipped}
        assert reasons["goal"] == "its last 2 changes failed"
        assert third.proposed == third.rejected == ()


async def test_a_budget_exhausted_mid_cycle_pauses_the_change_until_it_is_raised(
    tmp_path: Path,
) -> None:
    repo = project.make_repository(tmp_path)
    config = evolve_config(signals=("test",), budget=Budget(tokens=1000))
    async with evolving(repo, evolve=config) as runtime:
        daemon = EvolutionDaemon(runtime, repo)
        await within(daemon.run(once=True))  # returns: a paused change waits for a person
        [change] = await load_changes(runtime.store)
        assert change.budget == Budget(tokens=1000)
        assert change.status == "paused", change.error_log
        assert change.task_id is not None and change.error_log is not None
        assert "would exceed the budget of 1000" in change.error_log
        assert f"forgeline approve {change.task_id}" in change.error_log
        state = await runtime.state(change.task_id)
        assert state.status == "awaiting_approval"

        # A person raises the task's budget; the task finishes, and the tracker records it.
        await runtime.approve(change.task_id, Budget(tokens=50_000))
        assert (await within(runtime.run_until_settled(change.task_id))).status == "completed"
        await daemon.tracker.catch_up()
        done = await load_change(runtime.store, change.change_id)
        assert done.status == "completed" and done.generated_hash is not None
