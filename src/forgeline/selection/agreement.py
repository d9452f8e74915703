"""Choosing among candidates: the spec's checks filter, the designer's tests vote.

CodeT's dual agreement: candidates that pass exactly the same designer tests form a
consensus set; a set scores (number of candidates in it) x (number of tests they pass);
the best set's first candidate is chosen. Only candidates that pass every spec check take
part. When none does, the closest ones (most spec checks passed) do, and the choice says
so: it is then a fallback, not an answer that meets the request.

Ties go to the candidate whose exact files more candidates wrote (self-consistency), then
to the earliest. Pure: evaluations in, a choice out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from forgeline.selection.execution import Evaluation
from forgeline.spec.model import SpecModel


class Ranked(SpecModel):
    """One candidate's standing."""

    index: int
    digest: str
    spec_passed: int
    spec_ok: bool
    consensus: int
    """Candidates (itself included) that pass exactly the designer tests it passes."""
    designer_passed: int
    score: int


class Choice(SpecModel):
    """The chosen candidate (by its index in the pool) and why."""

    index: int | None
    digest: str | None
    reason: str
    spec_ok: bool
    """Whether the chosen candidate passes every spec check."""
    consensus_tests: tuple[str, ...] = ()
    """The designer tests the chosen consensus set agrees on."""
    ranking: tuple[Ranked, ...] = ()


def choose(evaluations: Sequence[Evaluation]) -> Choice:
    """Pick among ``evaluations`` (one per candidate, in sampling order)."""
    if not evaluations:
        return Choice(index=None, digest=None, reason="no candidates", spec_ok=False)
    closeness = [(not e.empty, e.spec_passed) for e in evaluations]
    eligible = [i for i, e in enumerate(evaluations) if e.spec_ok] or [
        i for i, c in enumerate(closeness) if c == max(closeness)
    ]
    groups: dict[frozenset[str], list[int]] = {}
    for i in eligible:
        groups.setdefault(frozenset(evaluations[i].designer_passed), []).append(i)
    copies = Counter(evaluations[i].digest for i in eligible)
    ranking: list[Ranked] = []
    for tests, members in groups.items():
        for i in members:
            e = evaluations[i]
            ranking.append(
                Ranked(
                    index=i,
                    digest=e.digest,
                    spec_passed=e.spec_passed,
                    spec_ok=e.spec_ok,
                    consensus=len(members),
                    designer_passed=len(tests),
                    score=len(members) * len(tests),
                )
            )
    ranking.sort(key=lambda r: (-r.score, -copies[r.digest], r.index))
    top = ranking[0]
    chosen = evaluations[top.index]
    total = chosen.spec_total
    if chosen.spec_ok:
        head = f"passes all {total} spec checks ({len(eligible)} of {len(evaluations)} do)"
    elif chosen.empty:
        head = "no candidate's answer held a file"
    else:
        head = (
            f"no candidate passes every spec check; the closest passes {top.spec_passed} "
            f"of {total} (failing {', '.join(chosen.spec_failed[:3])})"
        )
    vote = (
        f"consensus of {top.consensus} candidate(s) passing {top.designer_passed} designer "
        f"test(s), score {top.score}"
        if top.designer_passed
        else "no designer test separates them"
    )
    return Choice(
        index=top.index,
        digest=top.digest,
        reason=f"{head}; {vote}",
        spec_ok=chosen.spec_ok,
        consensus_tests=chosen.designer_passed,
        ranking=tuple(ranking),
    )
