"""Failing tests: the repository's pytest suite, run in the sandbox with its venv."""

from __future__ import annotations

from collections import defaultdict

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding, Probe, excerpt, module_under_test
from forgeline.runs.testrun import TestReport, run_pytest


async def run_tests(probe: Probe) -> TestReport:
    return await run_pytest(probe.root, probe.spawner, timeout=probe.test_timeout, venv=probe.venv)


def failing_tests(report: TestReport, files: tuple[str, ...]) -> Finding:
    """One signal per test file with failing tests (they likely share a cause), aimed at
    the module those tests test."""
    finding = Finding(count=report.failed + report.errors)
    if report.timed_out:
        finding.notes.append("tests: the test run timed out; no failing tests were read")
        return finding
    by_file: dict[str, list[str]] = defaultdict(list)
    for test_id in report.failing:
        by_file[test_id.split("::", 1)[0]].append(test_id)
    if finding.count and not by_file:
        by_file["."] = ["(the test run)"]
    output = excerpt(report.output, 4000)
    for test_file, ids in sorted(by_file.items()):
        listed = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        target = module_under_test(test_file, files) if test_file != "." else "."
        request = (
            f"These tests fail: {listed}. Find the cause and fix it in the code they test "
            f"({target}); change a test only if the test itself is wrong. Every other test "
            f"must keep passing.\n\npytest's output:\n```\n{output}\n```"
        )
        finding.signals.append(
            Signal(
                kind="test",
                fingerprint=f"test:{test_file}",
                target_module=target,
                summary=f"{len(ids)} failing test(s) in {test_file}: {listed}"[:500],
                request=request,
                locations=tuple(i.split("::", 1)[0] for i in ids[:1]),
                priority=KIND_PRIORITY["test"],
            )
        )
    return finding
