"""Sandbox test helpers and the escape suite's tally.

The bubblewrap tests never skip: when the sandbox cannot work on this machine they fail
with the reason (the ``bwrap_ready`` fixture, in ``tests/conftest.py``). Every test of
``test_escape.py`` is one escape attempt; it passes only if the attempt was contained, and
the terminal summary prints ``escape suite: N attempts, M contained`` so CI logs show it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

ESCAPE_MODULE = "test_escape.py"
_tally = {"attempts": 0, "contained": 0}


@pytest.fixture
def marker() -> str:
    """A unique word to put into sandboxed argv, to find its processes from the host."""
    return f"forgeline-marker-{uuid.uuid4().hex}"


def marker_pids(marker: str) -> list[int]:
    """Host pids of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat.rpartition(")")[2].split()[:1] not in (
            ["Z"],
            ["X"],
        ):
            found.append(int(entry.name))
    return found


def wait_no_marker(marker: str, within: float = 3.0) -> list[int]:
    """Wait until no process carries ``marker``; the pids still alive after ``within``."""
    deadline = time.monotonic() + within
    while True:
        left = marker_pids(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if Path(report.nodeid.split("::")[0]).name != ESCAPE_MODULE:
        return
    if report.when == "call":
        _tally["attempts"] += 1
        if report.passed:
            _tally["contained"] += 1
    elif report.when == "setup" and not report.passed:
        _tally["attempts"] += 1  # could not even be tried: not contained


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _tally["attempts"]:
        terminalreporter.write_line(
            f"escape suite: {_tally['attempts']} attempts, {_tally['contained']} contained"
        )
