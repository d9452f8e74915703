"""What the selection flow would record as events, as payloads.

The event types themselves (``spec.derived``, ``candidate.recorded``,
``candidate.chosen``) are added when the flow is wired into the pipeline; these models are
their ``data``, built from the flow's results by the functions below.
"""

from __future__ import annotations

from forgeline.selection.agreement import Choice
from forgeline.selection.candidate import Candidate
from forgeline.selection.execution import Evaluation
from forgeline.spec.checks import SpecCheck
from forgeline.spec.model import Spec, SpecModel


class SpecDerived(SpecModel):
    """The spec a request got, as a user reads it."""

    digest: str
    files: tuple[str, ...]
    interface: tuple[str, ...]
    """Signatures, command lines and routes, as written."""
    trials: tuple[str, ...]
    trial_sources: tuple[str, ...]
    checks: tuple[str, ...]
    """Every check's label, interface checks first."""
    notes: tuple[str, ...]


class CandidateRecorded(SpecModel):
    """One candidate and what it passed."""

    digest: str
    origin: str
    files: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    seconds: float
    temperature: float | None
    seed: int | None
    spec_passed: int
    spec_total: int
    spec_failed: tuple[str, ...]
    designer_passed: int


class CandidateChosen(SpecModel):
    """Which candidate was chosen, and why."""

    digest: str | None
    reason: str
    spec_ok: bool
    candidates: int
    scores: tuple[tuple[str, int], ...]
    """``(digest, score)`` for every eligible candidate, best first."""
    consensus_tests: tuple[str, ...]
    repaired: bool = False


def spec_derived(spec: Spec, checks: tuple[SpecCheck, ...]) -> SpecDerived:
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
        checks=tuple(c.label for c in checks),
        notes=spec.notes,
    )


def candidate_recorded(candidate: Candidate, evaluation: Evaluation) -> CandidateRecorded:
    answer = candidate.answer
    return CandidateRecorded(
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


def candidate_chosen(choice: Choice, candidates: int, *, repaired: bool = False) -> CandidateChosen:
    return CandidateChosen(
        digest=choice.digest,
        reason=choice.reason,
        spec_ok=choice.spec_ok,
        candidates=candidates,
        scores=tuple((r.digest, r.score) for r in choice.ranking),
        consensus_tests=choice.consensus_tests,
        repaired=repaired,
    )
