"""Run the spec's checks, the designer's tests (and, for a benchmark, hidden tests) against
each candidate, in a scratch workspace of its own, through forgeline's spawner.

A candidate's code files (never its own tests) and the suite's test files are written to
a fresh directory under ``scratch``; one pytest run (``run_pytest``, the only place this
package runs tests) gives which tests failed; the directory is removed. Everything but
the model calls is here, so a benchmark can replay selection with pytest alone.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from forgeline.errors import WorkspaceError
from forgeline.runs.testrun import TestReport, run_pytest
from forgeline.sandbox.spawner import ProcessSpawner
from forgeline.selection.candidate import Candidate
from forgeline.selection.designer import DesignedTest, DesignedTests
from forgeline.spec.checks import SpecCheck, spec_suite
from forgeline.spec.model import Spec, SpecModel
from forgeline.workspace.git import confined_path
from forgeline.workspace.venv import WorkspaceVenv


class TestSuite(SpecModel):
    """The test files run against every candidate, and what each test is for."""

    __test__ = False  # not a pytest class, whatever its name says

    files: dict[str, str]
    spec_checks: tuple[SpecCheck, ...] = ()
    designer: tuple[DesignedTest, ...] = ()
    extra: tuple[str, ...] = ()
    """Test files whose outcome is recorded but never used to choose (hidden tests)."""


def build_suite(
    spec: Spec, designed: Sequence[DesignedTests] = (), extra: Mapping[str, str] | None = None
) -> TestSuite:
    files, checks = spec_suite(spec)
    for d in designed:
        files[d.path] = d.source
    files.update(extra or {})
    return TestSuite(
        files=files,
        spec_checks=checks,
        designer=tuple(t for d in designed for t in d.tests),
        extra=tuple(extra or ()),
    )


class Evaluation(SpecModel):
    """What one pytest run found for one candidate."""

    digest: str
    spec_failed: tuple[str, ...] = ()
    spec_total: int = 0
    designer_passed: tuple[str, ...] = ()
    extra_ok: bool | None = None
    """None when the suite has no extra tests."""
    extra_failed: tuple[str, ...] = ()
    """The extra test files with a failing test."""
    error: str = ""
    """The first failing spec check's report, for a repair."""
    seconds: float = 0.0
    timed_out: bool = False
    empty: bool = False
    """The candidate has no code file at all (its answer held none)."""

    @property
    def spec_ok(self) -> bool:
        """Whether it passes every spec check (an answer with no code never does)."""
        return not self.spec_failed and not self.empty

    @property
    def spec_passed(self) -> int:
        return self.spec_total - len(self.spec_failed)


def _section(output: str, test_id: str) -> str:
    """pytest's report of ``test_id`` in ``output`` (its ``___ name ___`` section)."""
    name = test_id.rsplit("::", 1)[-1]
    match = re.search(
        rf"_{{3,}} {re.escape(name)} _{{3,}}\n(.*?)(?=\n_{{3,}} |\n=+ |\Z)", output, re.S
    )
    return match[1].strip() if match else output.strip()[-1500:]


def read_report(report: TestReport, candidate: Candidate, suite: TestSuite) -> Evaluation:
    """The candidate's evaluation from its pytest run."""
    spec_ids = [c.test_id for c in suite.spec_checks]
    unusable = report.timed_out or (report.errors and not report.failing and not report.passed)
    failing = set(report.failing)

    def failed(test_id: str) -> bool:
        return bool(unusable) or test_id in failing or test_id.split("::", 1)[0] in failing

    spec_failed = tuple(t for t in spec_ids if failed(t))
    extra_ok = None
    extra_failed: tuple[str, ...] = ()
    if suite.extra:
        files = {f.split("::", 1)[0] for f in failing}
        extra_failed = tuple(p for p in suite.extra if unusable or p in files)
        extra_ok = not extra_failed
    return Evaluation(
        digest=candidate.digest,
        spec_failed=spec_failed,
        spec_total=len(spec_ids),
        designer_passed=tuple(t.test_id for t in suite.designer if not failed(t.test_id)),
        extra_ok=extra_ok,
        extra_failed=extra_failed,
        error=_section(report.output, spec_failed[0]) if spec_failed else "",
        seconds=round(report.duration_s, 3),
        timed_out=report.timed_out,
        empty=not candidate.code_files,
    )


class CandidateRunner:
    """Runs suites against candidates: the spawner, the venv whose pytest runs them, and
    a scratch directory for the workspaces (outside any repository)."""

    def __init__(
        self,
        spawner: ProcessSpawner,
        *,
        venv: WorkspaceVenv | None,
        scratch: Path,
        timeout: float = 120.0,
    ) -> None:
        self.spawner = spawner
        self.venv = venv
        self.scratch = scratch
        self.timeout = timeout

    async def evaluate(self, candidate: Candidate, suite: TestSuite) -> Evaluation:
        self.scratch.mkdir(parents=True, exist_ok=True)
        workspace = Path(
            tempfile.mkdtemp(prefix=f"candidate-{candidate.digest}-", dir=self.scratch)
        )
        try:
            for path, text in (*candidate.code_files.items(), *suite.files.items()):
                try:
                    target = confined_path(workspace, path)
                except WorkspaceError:  # a path outside the workspace is not written
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            report = await run_pytest(workspace, self.spawner, timeout=self.timeout, venv=self.venv)
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        return read_report(report, candidate, suite)
