"""What the patch engine asks of a changed tree before the change counts.

A ``Validator`` is asked twice: ``before`` on the untouched tree (problems already there
are not the change's fault) and ``after`` on the changed tree. ``PythonValidator`` checks
that changed Python files compile and that the test suite still collects.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from forgeline.runs.testrun import pytest_command
from forgeline.sandbox.spawner import ProcessSpawner, tail_text
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.venv import WorkspaceVenv, venv_mounts

__all__ = ["COLLECT_OUTPUT_LIMIT", "PythonValidator", "Validator", "changed_python"]

#: Characters of collection output quoted in a rejection.
COLLECT_OUTPUT_LIMIT = 3_000

_ERROR_LINE = re.compile(r"^ERROR (\S+)")


class Validator(Protocol):
    """Judges the tree after a change.

    ``before`` runs on the untouched tree with the paths the change will touch and returns
    the keys of problems already there; ``after`` runs on the changed tree with the paths
    that changed and those keys, and returns what is wrong now (empty: the change is fine).
    Either may raise a ``ForgelineError`` (a test run that could not start); the patch
    engine then rolls back and reports it.
    """

    async def before(self, workspace: GitWorkspace, paths: Sequence[str]) -> frozenset[str]: ...

    async def after(
        self, workspace: GitWorkspace, paths: Sequence[str], before: frozenset[str]
    ) -> list[str]: ...


def changed_python(paths: Iterable[str]) -> bool:
    return any(p.endswith(".py") for p in paths)


def compile_problem(root: Path, rel: str) -> str | None:
    """Why the Python file ``rel`` does not compile, or None (also for other files)."""
    if not rel.endswith(".py"):
        return None
    target = root / rel
    if not target.is_file():
        return None
    return source_problem(rel, target.read_bytes())


#: Characters of the offending line ``source_problem`` quotes at most.
LINE_LIMIT = 200


def source_problem(rel: str, source: str | bytes) -> str | None:
    """Why ``source``, the content of Python file ``rel``, does not compile, or None."""
    try:
        compile(source, rel, "exec", dont_inherit=True)
    except SyntaxError as exc:
        # The line itself, since a model answering again sees only this message: told
        # just "line 1: invalid syntax", a small model repeats its answer word for word.
        line = (exc.text or "").strip()
        shown = f" in `{line}`" if line and len(line) <= LINE_LIMIT else ""
        return f"{rel} does not compile (line {exc.lineno}): {exc.msg}{shown}"
    except ValueError as exc:  # e.g. a NUL byte
        return f"{rel} does not compile: {exc}"
    return None


class PythonValidator:
    """Changed Python files compile; the workspace's tests still collect.

    Compiling runs no process. Collection (``python -m pytest --collect-only``, with the
    interpreter of ``venv``, the workspace's venv, when given) runs through ``spawner``
    only when the change touches a ``.py`` file and a spawner is given
    (``None``: compile only). A collection error in a file that already failed to collect
    before the change does not count against it. The run writes nothing into the workspace
    (no cache, no bytecode) and, like the tester, reads no pytest configuration from the
    directories above it.
    """

    def __init__(
        self,
        spawner: ProcessSpawner | None,
        *,
        venv: WorkspaceVenv | None = None,
        timeout: float = 120,
    ) -> None:
        self.spawner = spawner
        self.mounts = venv_mounts(venv)
        self.timeout = timeout

    async def before(self, workspace: GitWorkspace, paths: Sequence[str]) -> frozenset[str]:
        if self.spawner is None or not changed_python(paths):
            return frozenset()
        errors, _ = await self.collect(workspace, self.spawner)
        return errors

    async def after(
        self, workspace: GitWorkspace, paths: Sequence[str], before: frozenset[str]
    ) -> list[str]:
        problems = [p for rel in paths if (p := compile_problem(workspace.path, rel))]
        if problems or self.spawner is None or not changed_python(paths):
            return problems
        errors, output = await self.collect(workspace, self.spawner)
        new = sorted(errors - before)
        if new:
            problems.append(
                f"the tests no longer collect ({', '.join(new)}):\n"
                + tail_text(output, COLLECT_OUTPUT_LIMIT)
            )
        return problems

    async def collect(
        self, workspace: GitWorkspace, spawner: ProcessSpawner
    ) -> tuple[frozenset[str], str]:
        """The keys of collection errors (files, or an abnormal exit) and pytest's output."""
        root = workspace.path
        with tempfile.TemporaryDirectory(prefix="forgeline-collect-") as tmp:
            python = self.mounts.python
            argv = pytest_command(root, Path(tmp), python, "--collect-only", "-q", "-rfE")
            result = await spawner.run(argv, cwd=root, mounts=self.mounts, timeout=self.timeout)
        output = result.output
        if result.timed_out:
            return frozenset({f"<collection timed out after {self.timeout:g}s>"}), output
        if result.exit_code in (0, 5):  # 5: nothing to collect
            return frozenset(), output
        found = {m.group(1) for line in output.splitlines() if (m := _ERROR_LINE.match(line))}
        return frozenset(found or {f"<pytest exited with code {result.exit_code}>"}), output
