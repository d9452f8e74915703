"""A request that goes straight to the candidates: sample, check, choose, land.

The coder's step for a ``spec.derived`` the route rule sends to it (a request for one
module, class, command line or service). ``selection.select`` does the work on the
coder's model, metered like every stage call: the tier's ``candidates`` whole-program
answers from one identical prompt (the request, the spec, the answer format), the
designer's tests written from the request alone, every candidate run against the spec's
checks and those tests in a scratch directory through the spawner, the choice by the
spec's hard filter and dual agreement, and while none passes the spec, ``repair_rounds``
of one fresh repair (the request, one candidate, one error) and a new sample.

What lands (``Lander``, through the patch engine) is the chosen candidate's code, the
designer tests its consensus agreed on, and those of its own tests it passes; the spec's
checks are on the branch already. Each candidate is recorded (``candidate.recorded``),
then the choice and why (``candidate.chosen``). A choice that passes the spec opens the
code for testing; one that does not is a failed attempt, and the planner runs next with
the closest candidate on the branch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from forgeline.core.events import CodePrOpened, EventData, NewEvent
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.landing import Landed, Lander, RolledBackError
from forgeline.selection.candidate import Candidate, filtered
from forgeline.selection.execution import CandidateRunner
from forgeline.selection.flow import Selection, passing_own_tests, select
from forgeline.spec import Spec


class DirectAttempt:
    """The coder's candidates for one task (see the module)."""

    def __init__(self, agent: StageAgent, lander: Lander) -> None:
        self.agent = agent
        self.lander = lander

    async def run(self, run: StageRun) -> list[NewEvent]:
        state = run.state
        assert state.spec is not None, "a direct attempt follows spec.derived"
        spec = Spec.model_validate(state.spec.spec)
        _, profile = run.tier
        services = self.agent.services
        await run.begin_change("the chosen candidate")
        with tempfile.TemporaryDirectory(prefix="forgeline-candidates-") as scratch:
            runner = CandidateRunner(
                services.spawner,
                venv=await run.venv(),
                scratch=Path(scratch),
                timeout=services.settings.test_timeout,
            )
            selection = await select(
                self.agent.model("coder"),
                spec,
                runner,
                candidates=profile.candidates,
                designers=profile.designers,
                repairs=profile.repair_rounds,
                resample=True,
                temperature=profile.temperature,
                seed=profile.seed,
                copy=False,
                prepare=lambda c: filtered(c, spec, profile.filters),
                timeout=self.agent.model_timeout("coder"),
            )
            landed, chosen, note = await self._land(run, runner, selection, spec)
        _, recorded, choice = selection.records()
        choice = choice.model_copy(
            update={
                "index": chosen,
                "digest": selection.candidates[chosen].digest if chosen is not None else None,
                "reason": choice.reason + note,
                "spec_ok": chosen is not None and selection.evaluations[chosen].spec_ok,
                "commit": landed.commit,
                "files": tuple(landed.files),
                "tests": (*state.spec.test_files, *(f for f in landed.files if _is_test(f))),
            }
        )
        events = [*_chained(run, recorded), run.event(choice)]
        if choice.spec_ok:
            opened = CodePrOpened(
                branch=state.branch,
                commit=landed.commit,
                round=0,
                reason="selection",
                files=tuple(dict.fromkeys((*state.files, *landed.files))),
            )
            events.append(run.event(opened))
        return [*events, *await run.completed_change(landed.commit, landed.base, landed.files)]

    async def _land(
        self, run: StageRun, runner: CandidateRunner, selection: Selection, spec: Spec
    ) -> tuple[Landed, int | None, str]:
        """Land the chosen candidate with its tests; should the patch engine refuse it
        (a file that does not compile where the spec checks nothing), the next in the
        ranking. Returns what landed, its index, and a note for the reason."""
        ranking = [r.index for r in selection.choice.ranking]
        note = ""
        for index in ranking:
            candidate = selection.candidates[index]
            files = {
                **candidate.code_files,
                **selection.agreed_tests(),
                **await passing_own_tests(runner, candidate, spec),
            }
            what = _what(selection, index, candidate)
            try:
                return await self.lander.land_files(run, files, what), index, note
            except RolledBackError as exc:
                note += f"; candidate {index + 1} did not land ({exc.reason})"
        landed = await self.lander.land(run, None, "no candidate")
        return landed, None, note


def _what(selection: Selection, index: int, candidate: Candidate) -> str:
    """The commit message: which candidate, of how many, how it met the spec."""
    evaluation = selection.evaluations[index]
    met = (
        f"passes all {evaluation.spec_total} spec checks"
        if evaluation.spec_ok
        else f"closest: {evaluation.spec_passed} of {evaluation.spec_total} spec checks"
    )
    return (
        f"candidate {index + 1} of {len(selection.candidates)} ({candidate.origin}, "
        f"{candidate.digest}; {met})"
    )


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py")


def _chained(run: StageRun, payloads: tuple[EventData, ...]) -> list[NewEvent]:
    """Events for ``payloads``: the first caused by the trigger, each next one by the one
    before it (the store keeps one event of a type per cause)."""
    events: list[NewEvent] = []
    for data in payloads:
        event = run.event(data)
        if events:
            event = event.model_copy(update={"causation_id": events[-1].id})
        events.append(event)
    return events
