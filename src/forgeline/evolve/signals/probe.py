"""What every signal source works with: the tree being scanned and how to run tools in it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forgeline.core.evolution import Signal
from forgeline.sandbox.spawner import NO_MOUNTS, Mounts, ProcessResult, ProcessSpawner
from forgeline.workspace.venv import WorkspaceVenv


@dataclass(frozen=True)
class Probe:
    """A checkout to scan (``root``, its tracked ``files``), the spawner every tool runs
    through and the repository's venv (None: forgeline's own interpreter)."""

    root: Path
    files: tuple[str, ...]
    spawner: ProcessSpawner
    venv: WorkspaceVenv | None
    test_timeout: float = 300
    timeout: float = 600
    markers: tuple[str, ...] = ("TODO", "FIXME")
    goals: Path | None = None
    """The repository's ``.forgeline/goals.md`` (not part of the checkout: ignored)."""

    @property
    def mounts(self) -> Mounts:
        return self.venv.mounts() if self.venv is not None else NO_MOUNTS

    async def python(self, *args: str, timeout: float | None = None) -> ProcessResult:
        """``python *args`` in the checkout, through the spawner, with the venv."""
        mounts = self.mounts
        return await self.spawner.run(
            [mounts.python, *args],
            cwd=self.root,
            mounts=mounts,
            timeout=timeout or self.timeout,
        )

    def python_files(self) -> list[str]:
        return [f for f in self.files if f.endswith(".py")]


@dataclass
class Finding:
    """What one signal source found: its signals, how many findings they hold (one signal
    may group several), and notes on what it could not look at."""

    signals: list[Signal] = field(default_factory=list)
    count: int = 0
    notes: list[str] = field(default_factory=list)


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or "tests" in PurePosixPath(path).parts[:-1]
    )


def module_under_test(test_file: str, files: Sequence[str]) -> str:
    """The module a test file tests, by name (``tests/test_calc.py`` -> ``calc.py``,
    preferring one in the same directory, then the shortest path); the test file itself
    when no module has that name."""
    path = PurePosixPath(test_file)
    name = re.sub(r"^test_|_test$", "", path.stem) + ".py"
    candidates = [f for f in files if PurePosixPath(f).name == name and not is_test_file(f)]
    if not candidates:
        return test_file
    same_dir = [f for f in candidates if PurePosixPath(f).parent == path.parent]
    return (same_dir or sorted(candidates, key=lambda f: (f.count("/"), f)))[0]


def excerpt(text: str, limit: int) -> str:
    """The last ``limit`` characters of a tool's output (the end says the most)."""
    text = text.strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]
