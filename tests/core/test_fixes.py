"""Fix rounds read back from a task's log: records, the run's end and the fix rate."""

from __future__ import annotations

from forgeline.core.events import FixAttempted, TestResults
from forgeline.core.fixes import FixRun, attempts_from_log, fix_rate, run_from_log
from tests.core.given import History


def test_an_applied_round_takes_the_outcome_of_the_tests_for_its_commit() -> None:
    h = History()
    h.add(TestResults(commit="c0", passed=0, failed=1), actor="tester")
    h.add(FixAttempted(attempt=1, outcome="applied", commit="c1", files=("a.py",)), "fixer")
    assert [a.outcome for a in attempts_from_log(h.events)] == ["applied"]  # not tested yet
    h.add(TestResults(commit="c1", passed=0, failed=1), actor="tester")
    h.add(FixAttempted(attempt=2, outcome="applied", commit="c2", files=("b.py",)), "fixer")
    h.add(TestResults(commit="c2", passed=2, failed=0), actor="tester")
    assert [a.outcome for a in attempts_from_log(h.events)] == ["tests_fail", "tests_pass"]
    run = run_from_log(h.events)
    assert run is not None and run.fixed and run.changed == ("a.py", "b.py")


def test_a_rejected_or_repeated_last_round_ends_the_run_without_a_fix() -> None:
    h = History()
    h.add(FixAttempted(attempt=1, outcome="rejected", reason="did not apply"), "fixer")
    run = run_from_log(h.events)
    assert run is not None and run.stopped == "failed" and not run.fixed
    h.add(FixAttempted(attempt=2, outcome="no_progress", reason="the same change"), "fixer")
    [_, repeated] = attempts_from_log(h.events)
    assert repeated.outcome == "rejected" and repeated.reason == "no progress: the same change"
    assert run_from_log(h.events).stopped == "no_progress"  # type: ignore[union-attr]
    assert run_from_log(History().events) is None  # no fix round ran


def test_the_fix_rate_is_the_share_of_runs_that_ended_with_passing_tests() -> None:
    passed = FixRun(attempts=(), stopped="tests_pass")
    failed = FixRun(attempts=(), stopped="max_attempts")
    assert fix_rate([passed, failed, failed, passed]) == 0.5
    assert fix_rate([]) == 0.0
