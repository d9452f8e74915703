"""Choosing by dual agreement: the spec filters, designer tests vote."""

from __future__ import annotations

from forgeline.selection.agreement import choose
from forgeline.selection.execution import Evaluation


def ev(digest: str, designer: tuple[str, ...], failed: tuple[str, ...] = ()) -> Evaluation:
    return Evaluation(digest=digest, spec_failed=failed, spec_total=3, designer_passed=designer)


def test_the_largest_consensus_times_its_tests_wins() -> None:
    # CodeT's example in small: two candidates agree on tests a, b; one passes a, b, c alone.
    pool = [
        ev("lonely", ("a", "b", "c")),
        ev("x", ("a", "b")),
        ev("y", ("a", "b")),
        ev("none", ()),
    ]
    choice = choose(pool)
    assert (choice.index, choice.digest) == (1, "x")  # score 2 x 2 = 4 against 1 x 3 = 3
    assert choice.spec_ok
    assert choice.consensus_tests == ("a", "b")
    assert [(r.digest, r.score) for r in choice.ranking] == [
        ("x", 4),
        ("y", 4),
        ("lonely", 3),
        ("none", 0),
    ]
    assert choice.reason == (
        "passes all 3 spec checks (4 of 4 do); consensus of 2 candidate(s) passing 2 "
        "designer test(s), score 4"
    )


def test_spec_checks_gate_and_designer_tests_only_vote() -> None:
    pool = [
        ev("fails-spec", ("a", "b", "c", "d"), failed=("t1",)),
        ev("passes", ()),
    ]
    choice = choose(pool)
    assert choice.digest == "passes"
    assert "no designer test separates them" in choice.reason


def test_without_a_spec_pass_the_closest_is_a_fallback() -> None:
    pool = [
        ev("far", ("a",), failed=("t1", "t2")),
        ev("close", (), failed=("t1",)),
        ev("close-agreed", ("a",), failed=("t2",)),
    ]
    choice = choose(pool)
    assert choice.digest == "close-agreed"
    assert not choice.spec_ok
    assert choice.reason.startswith("no candidate passes every spec check; the closest passes 2")


def test_ties_go_to_the_answer_written_most_often_then_the_first() -> None:
    pool = [ev("a", ()), ev("b", ()), ev("b", ())]
    assert choose(pool).index == 1
    assert choose([ev("a", ()), ev("b", ())]).index == 0
    assert choose([]).index is None
