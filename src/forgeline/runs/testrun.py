"""Run a workspace's pytest suite through a spawner and read its JUnit report.

The run must leave the workspace as it found it: the JUnit report goes to a temporary
directory outside the workspace, ``-p no:cacheprovider`` keeps ``.pytest_cache`` away and
the spawner's environment sets ``PYTHONDONTWRITEBYTECODE`` (no ``__pycache__``; pytest's
assertion rewriter honours it too).

The run is also kept from reading configuration above the workspace: ``--rootdir`` and
``--confcutdir`` are the workspace, and when the workspace has no pytest configuration of
its own an empty ini file (in the temporary directory) is passed with ``-c`` so that an
ini file in some parent directory is not picked up.

With the workspace's venv (``workspace.venv``) pytest runs with the venv's interpreter, so
only the project's own packages (and the venv's pytest) load, never forgeline's plugins.
"""

from __future__ import annotations

import configparser
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from forgeline.core.events import RunUsage
from forgeline.errors import ForgelineError
from forgeline.runs.usage import run_usage
from forgeline.sandbox.spawner import ProcessSpawner, tail_text
from forgeline.workspace.venv import WorkspaceVenv, venv_mounts

__all__ = [
    "OUTPUT_LIMIT",
    "JUnitSummary",
    "PytestRunError",
    "TestReport",
    "junit_test_id",
    "parse_junit",
    "run_pytest",
]

#: Characters of pytest's output kept in a ``TestReport``.
OUTPUT_LIMIT = 8_000
#: At most this many failing test ids are listed (the counts stay exact).
MAX_FAILING = 500
#: A JUnit report larger than this is not parsed.
MAX_REPORT_BYTES = 50 * 1024 * 1024

_EXIT_CODES = {
    0: "all tests passed",
    1: "some tests failed",
    2: "interrupted, e.g. by errors during collection",
    3: "internal pytest error",
    4: "pytest usage error",
    5: "no tests were collected",
}


class PytestRunError(ForgelineError):
    """The test run could not be set up (the workspace is missing or unusable)."""


class TestReport(BaseModel):
    """What one pytest run of a workspace found."""

    __test__: ClassVar[bool] = False  # not a test class, whatever its name says

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: int
    failed: int
    errors: int
    skipped: int
    failing: tuple[str, ...] = ()
    passing: tuple[str, ...] = ()
    """The ids of the tests that passed (the evolution daemon's regression check)."""
    output: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    usage: RunUsage | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and self.passed > 0 and not self.timed_out

    @property
    def tests(self) -> int:
        """How many tests pytest found and ran (a collection error is not a test)."""
        return self.passed + self.failed + self.skipped


class JUnitSummary(NamedTuple):
    """Counts from a JUnit report; ``problem`` says why it could not be read (then errors=1)."""

    passed: int
    failed: int
    errors: int
    skipped: int
    failing: tuple[str, ...]
    problem: str | None = None
    passing: tuple[str, ...] = ()


# --------------------------------------------------------------------------- JUnit


def _module_parts(parts: list[str], workspace: Path | None) -> int:
    """How many leading dotted ``parts`` name the module (the rest are classes)."""
    if workspace is not None:
        for k in range(len(parts), 0, -1):
            if (workspace.joinpath(*parts[:k]).with_suffix(".py")).is_file():
                return k
    # Without the files: module names are lower case, test classes are CapWords.
    for k in range(1, len(parts)):
        if parts[k][:1].isupper():
            return k
    return len(parts)


def junit_test_id(classname: str, name: str, workspace: Path | None = None) -> str:
    """A pytest node id (``tests/test_x.py::TestA::test_b``) from JUnit's classname and name.

    pytest writes ``tests.test_x.TestA`` / ``test_b``; a collection error of a module has an
    empty classname and the dotted module as its name. With ``workspace`` the split between
    module and classes is checked against the files; without it, CapWords parts are classes.
    """
    if not classname:
        if not name:
            return "<unknown>"
        parts = name.split(".")
        if workspace is not None and workspace.joinpath(*parts).is_dir():
            return "/".join(parts)
        return "/".join(parts) + ".py"
    parts = classname.split(".")
    k = _module_parts(parts, workspace)
    return "::".join(["/".join(parts[:k]) + ".py", *parts[k:], name])


def parse_junit(xml_text: str, workspace: Path | None = None) -> JUnitSummary:
    """Count pytest's JUnit XML (``<testsuites>`` or a bare ``<testsuite>`` root).

    Each ``<testcase>`` counts once per outcome: a ``<failure>`` is a failure, an ``<error>``
    an error (a test can have both: it failed, then its teardown errored), a ``<skipped>``
    (also xfail) a skip, nothing at all a pass. ``failing`` lists the ids of failures and
    errors, in order. A missing, empty or garbled report gives one error and a ``problem``.
    """

    def broken(problem: str) -> JUnitSummary:
        return JUnitSummary(0, 0, 1, 0, (), problem)

    if not xml_text.strip():
        return broken("the JUnit report is empty")
    if "<!DOCTYPE" in xml_text:
        return broken("the JUnit report has a DTD, which pytest never writes; not parsed")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        return broken(f"the JUnit report is not valid XML: {exc}")
    if root.tag not in ("testsuites", "testsuite"):
        return broken(f"the JUnit report's root is <{root.tag}>, not <testsuites>/<testsuite>")

    passed = failed = errors = skipped = 0
    failing: list[str] = []
    passing: list[str] = []
    seen: set[str] = set()
    for case in root.iter("testcase"):
        has_failure = case.find("failure") is not None
        has_error = case.find("error") is not None
        if has_failure:
            failed += 1
        if has_error:
            errors += 1
        if has_failure or has_error:
            test_id = junit_test_id(case.get("classname", ""), case.get("name", ""), workspace)
            if test_id not in seen and len(failing) < MAX_FAILING:
                seen.add(test_id)
                failing.append(test_id)
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
            passing.append(
                junit_test_id(case.get("classname", ""), case.get("name", ""), workspace)
            )
    return JUnitSummary(passed, failed, errors, skipped, tuple(failing), None, tuple(passing))


# --------------------------------------------------------------------------- running


def _has_pytest_config(workspace: Path) -> bool:
    """Whether pytest would find its configuration in the workspace's root directory."""
    if any((workspace / name).is_file() for name in ("pytest.ini", ".pytest.ini")):
        return True
    if any((workspace / name).is_file() for name in ("pytest.toml", ".pytest.toml")):
        return True
    pyproject = workspace / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(errors="replace")).get("tool", {})
        except tomllib.TOMLDecodeError:
            return True  # let pytest report the broken file itself
        if isinstance(tool, dict) and "pytest" in tool:
            return True
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = workspace / name
        if path.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read_string(path.read_text(errors="replace"))
            except configparser.Error:
                return True
            if parser.has_section(section):
                return True
    return False


def _read_report(path: Path, workspace: Path) -> JUnitSummary:
    def broken(problem: str) -> JUnitSummary:
        return JUnitSummary(0, 0, 1, 0, (), problem)

    try:
        size = path.stat().st_size
    except OSError:
        return broken("pytest wrote no JUnit report")
    if size > MAX_REPORT_BYTES:
        return broken(f"the JUnit report is too large to parse ({size} bytes)")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return broken(f"the JUnit report could not be read: {exc}")
    return parse_junit(text, workspace)


def _exit_meaning(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return _EXIT_CODES.get(code, "unexpected exit code")


def _checked_workspace(workspace: Path) -> Path:
    workspace = workspace.resolve()
    if not workspace.is_dir():
        raise PytestRunError(f"workspace {workspace} does not exist or is not a directory")
    return workspace


def pytest_command(workspace: Path, tmp: Path, python: str, *args: str) -> list[str]:
    """``python -m pytest *args`` isolated to ``workspace``: no cache written, no
    configuration read from the directories above it (an empty ini in ``tmp`` when the
    workspace has none of its own)."""
    argv = [
        python,
        "-m",
        "pytest",
        *args,
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(workspace),
        "--confcutdir",
        str(workspace),
    ]
    if not _has_pytest_config(workspace):
        ini = tmp / "pytest.ini"
        ini.write_text("[pytest]\n")
        argv += ["-c", str(ini)]
    return argv


def _pytest_argv(workspace: Path, tmp: Path, python: str) -> tuple[Path, list[str]]:
    """The JUnit report path (in ``tmp``) and pytest's argv; may write an empty ini to ``tmp``."""
    tmp_dir = tmp.resolve()
    if tmp_dir.is_relative_to(workspace):
        raise PytestRunError(
            f"the temporary directory {tmp_dir} is inside the workspace {workspace}; "
            "point TMPDIR elsewhere"
        )
    report_path = tmp_dir / "junit.xml"
    return report_path, pytest_command(
        workspace, tmp_dir, python, "-q", "--junitxml", str(report_path)
    )


async def run_pytest(
    workspace: Path,
    spawner: ProcessSpawner,
    *,
    timeout: float = 300,
    venv: WorkspaceVenv | None = None,
) -> TestReport:
    """Run ``python -m pytest`` in ``workspace`` through ``spawner`` and report the result.

    The interpreter is the venv's with ``venv`` (which a sandbox sees read-only), else
    forgeline's own.

    Nothing is written into the workspace. Exit code 5 (nothing collected) gives a report
    with no passes and the line "no tests were collected"; a timeout gives
    ``timed_out=True`` (the spawner kills the process group). A missing or garbled JUnit
    report, or an abnormal exit with no failures recorded, counts as one error. ``output``
    is the tail of pytest's stderr then stdout, followed by forgeline's notes.
    """
    workspace = _checked_workspace(workspace)
    mounts = venv_mounts(venv)
    with tempfile.TemporaryDirectory(prefix="forgeline-pytest-") as tmp:
        report_path, argv = _pytest_argv(workspace, Path(tmp), mounts.python)
        result = await spawner.run(argv, cwd=workspace, mounts=mounts, timeout=timeout)
        summary = _read_report(report_path, workspace)

    notes: list[str] = []
    passed, failed, errors, skipped, failing, problem, passing = summary

    code = result.exit_code
    if result.timed_out:
        notes.append(f"pytest timed out after {timeout:g}s; its process group was killed")
        if problem is not None:  # killed before writing the report: that is the timeout
            errors = 0
            problem = None
    elif code == 5:
        notes.append("no tests were collected")
        passed = 0
    else:
        if problem is not None:
            notes.append(problem)
        if code is None:
            notes.append("pytest could not be reaped")
            errors = max(errors, 1)
        elif code not in (0, 1) and failed == 0 and errors == 0:
            errors = 1
    if code is not None:
        notes.append(f"pytest exited with code {code} ({_exit_meaning(code)})")

    body = result.stderr
    if body and result.stdout and not body.endswith("\n"):
        body += "\n"
    body += result.stdout
    note_text = "".join(f"[forgeline] {note}\n" for note in notes)
    if body and not body.endswith("\n"):
        body += "\n"
    output = tail_text(body, max(OUTPUT_LIMIT - len(note_text), 0)) + note_text

    return TestReport(
        passed=passed,
        failed=failed,
        errors=errors,
        skipped=skipped,
        failing=failing,
        passing=passing if code != 5 else (),
        output=output,
        exit_code=code,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        usage=run_usage(result.usage),
    )
