"""The small-model flow in one call: spec, candidates, designer tests, choice, repair.

``select`` is what the pipeline's coder will call for a request of one module, class,
command line or service (issue 12), and what the HumanEval harness calls now. Each model
call is one of the small functions of ``spec.copier``, ``selection.candidate``,
``selection.designer`` and ``selection.repair``; everything else is ``execution`` and
``agreement``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from forgeline.core.events import CandidateChosen, CandidateRecorded, SpecDerived
from forgeline.selection.agreement import Choice, choose
from forgeline.selection.candidate import (
    TEMPERATURE,
    Candidate,
    filtered,
    is_test_module,
    sample_candidates,
)
from forgeline.selection.designer import DesignedTests, design_tests
from forgeline.selection.execution import CandidateRunner, Evaluation, TestSuite, build_suite
from forgeline.selection.records import candidate_chosen, candidate_recorded, spec_derived
from forgeline.selection.repair import repair
from forgeline.spec.asking import AnyModel
from forgeline.spec.checks import tests_file
from forgeline.spec.copier import CopyResult, copy_examples, with_copies
from forgeline.spec.model import Spec, SpecModel

#: Where the designer tests the chosen consensus agreed on land.
AGREED_FILE = "test_designed.py"


class Selection(SpecModel):
    """Everything one run of the flow produced."""

    spec: Spec
    copies: CopyResult | None = None
    candidates: tuple[Candidate, ...]
    designed: tuple[DesignedTests, ...]
    evaluations: tuple[Evaluation, ...]
    choice: Choice
    repairs: int = 0
    resamples: int = 0

    @property
    def chosen(self) -> Candidate | None:
        return None if self.choice.index is None else self.candidates[self.choice.index]

    @property
    def tokens(self) -> int:
        answers = [c.answer for c in self.candidates] + [d.answer for d in self.designed]
        if self.copies is not None:
            answers.append(self.copies.answer)
        return sum(a.tokens for a in answers if a is not None)

    def agreed_tests(self) -> dict[str, str]:
        """The designer tests the chosen candidate's consensus set passes, as one test
        file, each distinct test once (none when there are none)."""
        agreed = set(self.choice.consensus_tests)
        bodies: dict[str, str] = {}  # one test per distinct code
        for test in (t for d in self.designed for t in d.tests if t.test_id in agreed):
            bodies.setdefault(test.code, test.test_id.rsplit("::", 1)[-1])
        named = [(name, code) for code, name in bodies.items()]
        return {AGREED_FILE: tests_file(self.spec, named)} if named else {}

    def records(self) -> tuple[SpecDerived, tuple[CandidateRecorded, ...], CandidateChosen]:
        """The payloads of ``spec.derived``, ``candidate.recorded`` and
        ``candidate.chosen``."""
        suite = build_suite(self.spec, self.designed)
        return (
            spec_derived(self.spec, suite.spec_checks),
            tuple(
                candidate_recorded(c, e, i)
                for i, (c, e) in enumerate(zip(self.candidates, self.evaluations, strict=True))
            ),
            candidate_chosen(
                self.choice, len(self.candidates), repairs=self.repairs, resamples=self.resamples
            ),
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


async def passing_own_tests(
    runner: CandidateRunner, candidate: Candidate, spec: Spec
) -> dict[str, str]:
    """The candidate's own test files whose every test passes against its code (they
    never took part in the choice)."""
    own = {p: t for p, t in candidate.files.items() if p not in candidate.code_files}
    own = {p: t for p, t in own.items() if is_test_module(p)}
    if not own:
        return {}
    evaluation = await runner.evaluate(candidate, build_suite(spec, extra=own))
    return {p: t for p, t in own.items() if p not in evaluation.extra_failed}


async def select(
    model: AnyModel,
    spec: Spec,
    runner: CandidateRunner,
    *,
    candidates: int = 5,
    designers: int = 3,
    repairs: int = 1,
    temperature: float = TEMPERATURE,
    seed: int = 0,
    copy: bool = True,
    resample: bool = False,
    extra: Mapping[str, str] | None = None,
    prepare: Callable[[Candidate], Candidate] | None = None,
    timeout: float | None = None,
) -> Selection:
    """Sample ``candidates``, check and rank them; while none passes the spec, at most
    ``repairs`` rounds of one fresh repair of the closest and, with ``resample``, a new
    sample of ``candidates`` (the next seeds) when the repair does not pass either.
    ``extra`` test files (a benchmark's hidden tests) run with the others and never take
    part in the choice. ``seed`` is where the sampling seeds start. ``prepare`` reshapes
    every answer before it is checked (the named filters for a model's habits)."""
    shape = prepare or (lambda candidate: filtered(candidate, spec))
    copies = None
    if copy:
        copies = await copy_examples(model, spec, timeout=timeout)
        spec = with_copies(spec, [copies])
    sampled = await sample_candidates(
        model, spec, candidates, temperature=temperature, first_seed=seed + 1, timeout=timeout
    )
    pool = [shape(c) for c in sampled]
    designed = [
        await design_tests(model, spec, i, temperature=temperature, seed=seed + i, timeout=timeout)
        for i in range(1, designers + 1)
    ]
    suite = build_suite(spec, designed, extra)
    evaluations = await evaluate_all(runner, pool, suite)
    choice = choose(evaluations)
    rounds = resamples = 0
    while not choice.spec_ok and choice.index is not None and rounds < repairs:
        base = pool[choice.index]
        fixed = await repair(
            model, spec, base, evaluations[choice.index].error, seed=seed + rounds, timeout=timeout
        )
        fixed = shape(fixed)
        pool.append(fixed)
        evaluations.append(await runner.evaluate(fixed, suite))
        choice = choose(evaluations)
        rounds += 1
        if resample and not choice.spec_ok:
            more = await sample_candidates(
                model,
                spec,
                candidates,
                temperature=temperature,
                first_seed=seed + 1 + candidates * rounds,
                timeout=timeout,
            )
            fresh = [shape(c) for c in more]
            pool += fresh
            evaluations += await evaluate_all(runner, fresh, suite)
            choice = choose(evaluations)
            resamples += 1
    return Selection(
        spec=spec,
        copies=copies,
        candidates=tuple(pool),
        designed=tuple(designed),
        evaluations=tuple(evaluations),
        choice=choice,
        repairs=rounds,
        resamples=resamples,
    )
