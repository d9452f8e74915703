"""What the patch engine asks of a changed tree before the change counts.

A ``Validator`` is asked twice: ``before`` on the untouched tree (problems already there
are not the change's fault) and ``after`` on the changed tree. ``PythonValidator`` checks
that changed Python files compile, that the packages the tree declares can be installed
(the venv is synced to them first) and that the test suite still collects.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from forgeline.runs.testrun import pytest_command
from forgeline.sandbox.spawner import ProcessSpawner, tail_text
from forgeline.workspace.declared import DECLARATION_FILES, PackageError
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.venv import WorkspaceVenv, venv_mounts

__all__ = [
    "COLLECT_OUTPUT_LIMIT",
    "PythonValidator",
    "Validator",
    "changed_declaration",
    "changed_python",
]

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


def changed_declaration(paths: Iterable[str]) -> bool:
    """Whether ``paths`` touch a file where the project declares its packages."""
    return any(
        p in DECLARATION_FILES or re.fullmatch(r"requirements[\w.-]*\.txt", p) for p in paths
    )


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
    """Changed Python files compile; the declared packages install; the workspace's tests
    still collect.

    Compiling runs no process. Collection (``python -m pytest --collect-only``, with the
    interpreter of ``venv``, the workspace's venv, when given) runs through ``spawner``
    only when the change touches a ``.py`` file or a declaration and a spawner is given
    (``None``: compile only). With ``sync`` (a stage run's ``venv``: the task's venv synced
    to the packages the tree declares), the venv is synced first, on the tree before and
    after the change: a declared package that cannot be installed (refused by the policy,
    missing from the index) is a problem of the change, and the tests collect with what
    the change declares. A problem that was already there before the change does not
    count against it. The run writes nothing into the workspace (no cache, no bytecode)
    and, like the tester, reads no pytest configuration from the directories above it.
    """

    def __init__(
        self,
        spawner: ProcessSpawner | None,
        *,
        venv: WorkspaceVenv | None = None,
        sync: Callable[[], Awaitable[WorkspaceVenv | None]] | None = None,
        timeout: float = 120,
    ) -> None:
        self.spawner = spawner
        self.mounts = venv_mounts(venv)
        self.sync = sync
        self.timeout = timeout

    def _runs(self, paths: Sequence[str]) -> bool:
        return changed_python(paths) or (self.sync is not None and changed_declaration(paths))

    async def _synced(self) -> str | None:
        """Sync the venv to the tree (with ``sync``); why it could not be, or None."""
        if self.sync is None:
            return None
        try:
            self.mounts = venv_mounts(await self.sync())
        except PackageError as exc:
            return f"the declared packages cannot be installed: {exc}"
        return None

    async def before(self, workspace: GitWorkspace, paths: Sequence[str]) -> frozenset[str]:
        if self.spawner is None or not self._runs(paths):
            return frozenset()
        problem = await self._synced()
        errors, _ = await self.collect(workspace, self.spawner)
        return errors | ({problem} if problem else set())

    async def after(
        self, workspace: GitWorkspace, paths: Sequence[str], before: frozenset[str]
    ) -> list[str]:
        problems = [p for rel in paths if (p := compile_problem(workspace.path, rel))]
        if problems or self.spawner is None or not self._runs(paths):
            return problems
        problem = await self._synced()
        if problem is not None and problem not in before:
            return [problem]
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
