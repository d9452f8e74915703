"""The extractor's precision on the agents suite: every reference solution passes its own
request's spec (a spec a correct program fails would turn away every right answer), and
the spec has teeth: a program that is not there fails it. Also the recall the README
reports, as a floor."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.agents.suite import HELD_OUT, SUITE, TUNED

from forgeline.sandbox.local import LocalSpawner
from forgeline.selection.candidate import Candidate
from forgeline.selection.execution import CandidateRunner, Evaluation, build_suite
from forgeline.spec import derive_spec


async def _evaluate_all(tmp_path: Path, broken: bool) -> dict[str, Evaluation]:
    runner = CandidateRunner(LocalSpawner(), venv=None, scratch=tmp_path, timeout=120)
    limit = asyncio.Semaphore(4)

    async def one(name: str, files: dict[str, str], request: str) -> tuple[str, Evaluation]:
        if broken:  # every module replaced by one that defines nothing
            files = {path: "VALUE = 1\n" for path in files}
        async with limit:
            spec = derive_spec(request)
            return name, await runner.evaluate(Candidate(files=files), build_suite(spec))

    pairs = await asyncio.gather(*(one(r.name, r.reference(), r.request) for r in SUITE))
    return dict(pairs)


async def test_every_reference_passes_its_own_spec(tmp_path: Path) -> None:
    results = await _evaluate_all(tmp_path, broken=False)
    failures = {
        name: (e.spec_failed, e.error[:600]) for name, e in results.items() if not e.spec_ok
    }
    assert not failures
    assert all(e.spec_total >= 2 for e in results.values())


async def test_a_program_that_is_not_there_fails_every_spec(tmp_path: Path) -> None:
    results = await _evaluate_all(tmp_path, broken=True)
    assert all(not e.spec_ok for e in results.values())


def test_recall_of_the_patterns() -> None:
    """Requests with at least one trial test read by pattern (figures in the README)."""
    tuned = sum(bool(derive_spec(r.request).trials) for r in TUNED)
    held_out = sum(bool(derive_spec(r.request).trials) for r in HELD_OUT)
    assert (tuned, held_out) == (9, 8)
