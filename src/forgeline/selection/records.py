"""The events the specification and selection flow records, built from its results.

The payloads are the core's (``spec.derived``, ``candidate.recorded``,
``candidate.chosen`` in ``forgeline.core.events``); the functions here fill them from a
``Spec``, a ``Candidate`` with its ``Evaluation`` and a ``Choice``.
"""

from __future__ import annotations

from forgeline.core.events import CandidateChosen, CandidateRecorded, SpecCheckLabel, SpecDerived
from forgeline.selection.agreement import Choice
from forgeline.selection.candidate import Candidate
from forgeline.selection.execution import Evaluation
from forgeline.spec.checks import SpecCheck
from forgeline.spec.model import Spec


def spec_derived(spec: Spec, checks: tuple[SpecCheck, ...]) -> SpecDerived:
    """The spec as a user reads it (the route's facts are the pipeline's to add)."""
    return SpecDerived(
        digest=spec.digest,
        files=tuple(m.path for m in spec.modules),
        interface=(
            *(c.render() for c in spec.callables),
            *(c.render() for c in spec.commands),
            *(r.render() for r in spec.routes),
        ),
        trials=tuple(t.code for t in spec.trials),
        trial_sources=tuple(t.source for t in spec.trials),
        checks=tuple(SpecCheckLabel(test_id=c.test_id, kind=c.kind, label=c.label) for c in checks),
        notes=spec.notes,
        spec=spec.model_dump(mode="json"),
    )


def candidate_recorded(
    candidate: Candidate, evaluation: Evaluation, index: int = 0
) -> CandidateRecorded:
    answer = candidate.answer
    return CandidateRecorded(
        index=index,
        digest=candidate.digest,
        origin=candidate.origin,
        files=tuple(sorted(candidate.files)),
        input_tokens=answer.input_tokens if answer else 0,
        output_tokens=answer.output_tokens if answer else 0,
        seconds=answer.seconds if answer else 0.0,
        temperature=answer.temperature if answer else None,
        seed=answer.seed if answer else None,
        spec_passed=evaluation.spec_passed,
        spec_total=evaluation.spec_total,
        spec_failed=evaluation.spec_failed,
        designer_passed=len(evaluation.designer_passed),
    )


def candidate_chosen(
    choice: Choice, candidates: int, *, repairs: int = 0, resamples: int = 0
) -> CandidateChosen:
    return CandidateChosen(
        digest=choice.digest,
        index=choice.index,
        reason=choice.reason,
        spec_ok=choice.spec_ok,
        candidates=candidates,
        scores=tuple((r.digest, r.score) for r in choice.ranking),
        consensus_tests=choice.consensus_tests,
        repairs=repairs,
        resamples=resamples,
    )
