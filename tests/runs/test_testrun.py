"""run_pytest on real temporary workspaces, and parse_junit on good and bad reports."""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from pathlib import Path

import pytest

from forgeline.runs.testrun import (
    PytestRunError,
    TestReport,
    junit_test_id,
    parse_junit,
    run_pytest,
)
from forgeline.sandbox.local import LocalSpawner


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def all_gone(pids: list[int], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(alive(p) for p in pids)


@pytest.fixture
def spawner() -> LocalSpawner:
    return LocalSpawner(kill_grace=1.0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


async def test_passing_and_failing_tests(spawner: LocalSpawner, workspace: Path) -> None:
    write(
        workspace,
        "todo.py",
        """
        def add(items, item):
            return [*items, item]
        """,
    )
    write(
        workspace,
        "test_todo.py",
        """
        import pytest
        from todo import add

        def test_add():
            assert add([], 1) == [1]

        def test_add_twice():
            assert add([1], 1) == [1]

        @pytest.mark.skipif(True, reason="later")
        def test_later():
            pass
        """,
    )
    write(
        workspace,
        "tests/test_more.py",
        """
        import pytest

        class TestThing:
            @pytest.mark.parametrize("x", [1, 2])
            def test_param(self, x):
                assert x == 1

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")

        def test_uses_broken(broken):
            pass
        """,
    )
    before = listing(workspace)

    report = await run_pytest(workspace, spawner, timeout=60)

    assert (report.passed, report.failed, report.errors, report.skipped) == (2, 2, 1, 1)
    assert report.failing == (
        "test_todo.py::test_add_twice",
        "tests/test_more.py::TestThing::test_param[2]",
        "tests/test_more.py::test_uses_broken",
    )
    assert report.exit_code == 1
    assert not report.timed_out
    assert not report.ok
    assert "test_add_twice" in report.output
    assert len(report.output) <= 8_100
    assert listing(workspace) == before, "the run wrote into the workspace"


async def test_all_passing_is_ok(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "test_ok.py", "def test_one():\n    assert True\n")
    before = listing(workspace)
    report = await run_pytest(workspace, spawner, timeout=60)
    assert report.ok
    assert (report.passed, report.failed, report.errors) == (1, 0, 0)
    assert report.failing == ()
    assert "exited with code 0" in report.output
    assert listing(workspace) == before


async def test_syntax_error_is_an_error(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "test_ok.py", "def test_one():\n    assert True\n")
    write(workspace, "tests/test_broken.py", "def test_broken(:\n    pass\n")
    before = listing(workspace)
    report = await run_pytest(workspace, spawner, timeout=60)
    assert report.errors >= 1
    assert not report.ok
    assert "tests/test_broken.py" in report.failing
    assert "SyntaxError" in report.output
    assert listing(workspace) == before


async def test_empty_workspace_collects_nothing(spawner: LocalSpawner, workspace: Path) -> None:
    report = await run_pytest(workspace, spawner, timeout=60)
    assert report.exit_code == 5
    assert report.passed == 0
    assert not report.ok
    assert "no tests were collected" in report.output
    assert listing(workspace) == set()


async def test_config_above_the_workspace_is_ignored(
    spawner: LocalSpawner, tmp_path: Path, workspace: Path
) -> None:
    # A parent directory's ini and conftest would break every test if they were used.
    write(tmp_path, "pytest.ini", "[pytest]\naddopts = --no-such-option\n")
    write(tmp_path, "conftest.py", "raise RuntimeError('parent conftest loaded')\n")
    write(workspace, "test_ok.py", "def test_one():\n    assert True\n")
    report = await run_pytest(workspace, spawner, timeout=60)
    assert report.ok, report.output


async def test_workspace_config_is_used(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "pyproject.toml", '[tool.pytest.ini_options]\ntestpaths = ["checks"]\n')
    write(workspace, "checks/test_a.py", "def test_a():\n    pass\n")
    write(workspace, "test_not_collected.py", "def test_b():\n    assert False\n")
    report = await run_pytest(workspace, spawner, timeout=60)
    assert report.ok, report.output
    assert report.passed == 1


async def test_endless_test_times_out_and_leaves_no_process(
    spawner: LocalSpawner, tmp_path: Path, workspace: Path
) -> None:
    pid_file = tmp_path / "pids.txt"  # outside the workspace
    write(
        workspace,
        "test_forever.py",
        f"""
        import os, subprocess, sys, time

        def test_forever():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            with open({str(pid_file)!r}, "w") as f:
                f.write(f"{{os.getpid()}} {{child.pid}}")
            while True:
                time.sleep(0.05)
        """,
    )
    before = listing(workspace)
    started = time.monotonic()
    # long enough for pytest to start and reach the test on a loaded machine
    report = await run_pytest(workspace, spawner, timeout=10)
    assert time.monotonic() - started < 40
    assert report.timed_out
    assert not report.ok
    assert "timed out" in report.output
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    assert await asyncio.to_thread(all_gone, pids)
    assert listing(workspace) == before


async def test_missing_workspace_is_refused(spawner: LocalSpawner, tmp_path: Path) -> None:
    with pytest.raises(PytestRunError):
        await run_pytest(tmp_path / "missing", spawner)


# --------------------------------------------------------------------------- parse_junit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="2" failures="2" skipped="2"
 tests="8">
<testcase classname="test_todo" name="test_add" time="0.001" />
<testcase classname="test_todo" name="test_bad" time="0.001"><failure message="x">t</failure>
</testcase>
<testcase classname="tests.test_more.TestThing" name="test_p[a.b]"><failure message="y" />
</testcase>
<testcase classname="tests.test_more" name="test_err"><error message="setup" /></testcase>
<testcase classname="" name="tests.test_syntax"><error message="collection failure" />
</testcase>
<testcase classname="test_todo" name="test_skip"><skipped message="later" /></testcase>
<testcase classname="test_todo" name="test_xf"><skipped type="pytest.xfail" /></testcase>
<testcase classname="test_todo" name="test_ok2" />
</testsuite></testsuites>
"""


def test_parse_junit_counts_and_ids() -> None:
    summary = parse_junit(JUNIT)
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (2, 2, 2, 2)
    assert summary.failing == (
        "test_todo.py::test_bad",
        "tests/test_more.py::TestThing::test_p[a.b]",
        "tests/test_more.py::test_err",
        "tests/test_syntax.py",
    )
    assert summary.problem is None


def test_parse_junit_bare_testsuite_root() -> None:
    xml = (
        '<testsuite tests="2"><testcase classname="pkg.test_x" name="test_a"/>'
        '<testcase classname="pkg.test_x" name="test_b"><failure/></testcase></testsuite>'
    )
    summary = parse_junit(xml)
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (1, 1, 0, 0)
    assert summary.failing == ("pkg/test_x.py::test_b",)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "not xml at all",
        "<testsuites><testcase",
        "<html><body/></html>",
        '<!DOCTYPE x [<!ENTITY a "b">]><testsuite/>',
    ],
)
def test_parse_junit_on_garbage(garbage: str) -> None:
    summary = parse_junit(garbage)
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (0, 0, 1, 0)
    assert summary.failing == ()
    assert summary.problem


def test_junit_test_id_uses_the_workspace_files(tmp_path: Path) -> None:
    write(tmp_path, "checks/Suite.py", "")
    write(tmp_path, "tests/__init__.py", "")
    assert junit_test_id("checks.Suite.TestA", "test_b", tmp_path) == (
        "checks/Suite.py::TestA::test_b"
    )
    assert junit_test_id("checks.Suite", "test_b", tmp_path) == "checks/Suite.py::test_b"
    assert junit_test_id("", "tests", tmp_path) == "tests"
    assert junit_test_id("", "test_x", None) == "test_x.py"


def test_report_is_frozen_and_strict() -> None:
    report = TestReport(passed=1, failed=0, errors=0, skipped=0)
    assert report.ok
    assert not report.model_copy(update={"timed_out": True}).ok
    assert not TestReport(passed=0, failed=0, errors=0, skipped=0).ok
    with pytest.raises(ValueError, match="extra"):
        TestReport(passed=1, failed=0, errors=0, skipped=0, bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        report.passed = 2  # type: ignore[misc]
