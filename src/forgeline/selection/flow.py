"""The small-model flow in one call: spec, candidates, designer tests, choice, repair.

``select`` is what the pipeline's coder will call for a request of one module, class,
command line or service (issue 12), and what the HumanEval harness calls now. Each model
call is one of the small functions of ``spec.copier``, ``selection.candidate``,
``selection.designer`` and ``selection.repair``; everything else is ``execution`` and
``agreement``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from forgeline.selection.agreement import Choice, choose
from forgeline.selection.candidate import TEMPERATURE, Candidate, sample_candidates
from forgeline.selection.designer import DesignedTests, design_tests
from forgeline.selection.execution import CandidateRunner, Evaluation, TestSuite, build_suite
from forgeline.selection.records import (
    CandidateChosen,
    CandidateRecorded,
    SpecDerived,
    candidate_chosen,
    candidate_recorded,
    spec_derived,
)
from forgeline.selection.repair import repair
from forgeline.spec.asking import AnyModel
from forgeline.spec.copier import CopyResult, copy_examples, with_copies
from forgeline.spec.model import Spec, SpecModel


class Selection(SpecModel):
    """Everything one run of the flow produced."""

    spec: Spec
    copies: CopyResult | None = None
    candidates: tuple[Candidate, ...]
    designed: tuple[DesignedTests, ...]
    evaluations: tuple[Evaluation, ...]
    choice: Choice
    repairs: int = 0

    @property
    def chosen(self) -> Candidate | None:
        return None if self.choice.index is None else self.candidates[self.choice.index]

    @property
    def tokens(self) -> int:
        answers = [c.answer for c in self.candidates] + [d.answer for d in self.designed]
        if self.copies is not None:
            answers.append(self.copies.answer)
        return sum(a.tokens for a in answers if a is not None)

    def records(self) -> tuple[SpecDerived, tuple[CandidateRecorded, ...], CandidateChosen]:
        """The payloads of ``spec.derived``, ``candidate.recorded`` and
        ``candidate.chosen``."""
        suite = build_suite(self.spec, self.designed)
        return (
            spec_derived(self.spec, suite.spec_checks),
            tuple(
                candidate_recorded(c, e)
                for c, e in zip(self.candidates, self.evaluations, strict=True)
            ),
            candidate_chosen(self.choice, len(self.candidates), repaired=self.repairs > 0),
        )


async def evaluate_all(
    runner: CandidateRunner, candidates: list[Candidate], suite: TestSuite
) -> list[Evaluation]:
    """One evaluation per candidate; candidates with the same files are run once."""
    done: dict[str, Evaluation] = {}
    for candidate in candidates:
        if candidate.digest not in done:
            done[candidate.digest] = await runner.evaluate(candidate, suite)
    return [done[c.digest] for c in candidates]


async def select(
    model: AnyModel,
    spec: Spec,
    runner: CandidateRunner,
    *,
    candidates: int = 5,
    designers: int = 3,
    repairs: int = 1,
    temperature: float = TEMPERATURE,
    copy: bool = True,
    extra: Mapping[str, str] | None = None,
    prepare: Callable[[Candidate], Candidate] | None = None,
    timeout: float | None = None,
) -> Selection:
    """Sample ``candidates``, check and rank them, repair the closest while none passes
    the spec (at most ``repairs`` times). ``extra`` test files (a benchmark's hidden
    tests) run with the others and never take part in the choice. ``prepare`` reshapes
    every answer before it is checked (a named filter for a model's habits)."""
    shape = prepare or (lambda candidate: candidate)
    copies = None
    if copy:
        copies = await copy_examples(model, spec, timeout=timeout)
        spec = with_copies(spec, [copies])
    sampled = await sample_candidates(
        model, spec, candidates, temperature=temperature, timeout=timeout
    )
    pool = [shape(c) for c in sampled]
    designed = [
        await design_tests(model, spec, i, temperature=temperature, seed=i, timeout=timeout)
        for i in range(1, designers + 1)
    ]
    suite = build_suite(spec, designed, extra)
    evaluations = await evaluate_all(runner, pool, suite)
    choice = choose(evaluations)
    rounds = 0
    while not choice.spec_ok and choice.index is not None and rounds < repairs:
        base = pool[choice.index]
        fixed = await repair(
            model, spec, base, evaluations[choice.index].error, seed=rounds, timeout=timeout
        )
        fixed = shape(fixed)
        pool.append(fixed)
        evaluations.append(await runner.evaluate(fixed, suite))
        choice = choose(evaluations)
        rounds += 1
    return Selection(
        spec=spec,
        copies=copies,
        candidates=tuple(pool),
        designed=tuple(designed),
        evaluations=tuple(evaluations),
        choice=choice,
        repairs=rounds,
    )
