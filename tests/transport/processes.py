"""``forgeline`` commands as processes of their own, as a user starts them: the server and
workers of a cluster, each with its output in a log file the failure messages show."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.scripts import todo_project

CONFIG = (
    "workspace_venv = false\n"
    + todo_project.CONFIG
    + """
[transport]
heartbeat = 2.0
backoff = 0.2
backoff_max = 1.0
"""
)


def interpreter() -> str:
    """A Python whose own environment holds pytest and forgeline's dependencies. A worker
    runs the projects' tests with its interpreter inside the sandbox, which sees that
    interpreter's prefixes only: an environment that borrows its packages from another
    one (a ``.pth`` line) would find no pytest there."""
    site = Path(pytest.__file__).resolve().parents[1]
    if site.is_relative_to(Path(sys.prefix).resolve()):
        return sys.executable
    return str(site.parents[2] / "bin" / "python")


class Process:
    """``forgeline ARGS`` running, its output in ``log``; ``stop`` sends SIGTERM and waits."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGELINE_", "TODO_"))}
        env["PYTHONPATH"] = os.pathsep.join((str(REPO / "src"), str(REPO)))
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [interpreter(), "-m", "forgeline", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stop it (SIGTERM: the work in flight is finished first); its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()
