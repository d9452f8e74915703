"""A scan: one commit of a repository checked out apart, and every enabled signal source
run over it.

The daemon never scans the person's own checkout (its uncommitted edits are not what the
changes start from): it checks the commit out in a detached worktree,
``<repository>/.forgeline/worktrees/evolve-scan``, made once and reused, cleaned before
every scan (its lock lives outside it, with the task worktrees' locks). The same tree
scans a change's commit when the change completes (its "after").

Tools the scan runs need to be in the repository's venv: ruff, mypy and coverage are
copied there from forgeline's own installation the first time a scan needs them
(``WorkspaceVenv.seed``, the way pytest is), so nothing is downloaded. A tool forgeline
itself lacks is noted in the cycle and its signal skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from forgeline.config import Settings
from forgeline.core.events import SignalCounts, SignalKind
from forgeline.core.evolution import Signal
from forgeline.evolve.signals import goals as goal_signals
from forgeline.evolve.signals import lint, markers, tests, typecheck, uncovered
from forgeline.evolve.signals.probe import Finding, Probe
from forgeline.sandbox.spawner import ProcessSpawner
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.venv import VenvError, WorkspaceVenv, ensure_venv

SCAN_DIR = Path(".forgeline") / "worktrees" / "evolve-scan"
GOALS_FILE = Path(".forgeline") / "goals.md"
#: The tool each kind of signal runs in the venv (copied there from forgeline's own).
TOOLS: dict[SignalKind, str] = {"lint": "ruff", "type": "mypy", "coverage": "coverage"}
#: What a change's "after" scan looks at (no goals; no second test run under coverage).
AFTER_KINDS: frozenset[SignalKind] = frozenset({"test", "lint", "type", "todo"})


@dataclass(frozen=True)
class Scan:
    """What a scan of ``commit`` found."""

    commit: str
    signals: tuple[Signal, ...]
    counts: SignalCounts
    notes: tuple[str, ...]
    passing: frozenset[str]
    """The ids of the tests that passed (what a change must not break)."""
    failing: frozenset[str]


class Scanner:
    """Scans commits of one repository with the settings' signals, spawner and venv."""

    def __init__(self, repository: Path, settings: Settings, spawner: ProcessSpawner) -> None:
        self.repository = GitWorkspace(repository)
        self.settings = settings
        self.spawner = spawner

    @property
    def checkout_path(self) -> Path:
        return self.repository.path / SCAN_DIR

    async def checkout(self, commit: str) -> GitWorkspace:
        """The scan worktree at ``commit``, clean (made on first use)."""
        tree = GitWorkspace(self.checkout_path)
        await self.repository.ensure()  # .forgeline/ ignored, as for every task
        if not (self.checkout_path / ".git").exists():
            self.checkout_path.parent.mkdir(parents=True, exist_ok=True)
            await self.repository.git("worktree", "prune")
            await self.repository.git(
                "worktree", "add", "-q", "--detach", "-f", str(self.checkout_path), commit
            )
        else:
            await tree.git("checkout", "-q", "--detach", "-f", commit)
        await tree.git("clean", "-q", "-f", "-d", "-x")
        return tree

    async def scan(self, commit: str, kinds: Collection[SignalKind] | None = None) -> Scan:
        """Check ``commit`` out apart and run the signal sources of ``kinds`` (default:
        the ``[evolve] signals``) over it."""
        wanted = set(self.settings.evolve.signals if kinds is None else kinds)
        tree = GitWorkspace(self.checkout_path)
        self.checkout_path.mkdir(parents=True, exist_ok=True)
        async with tree.lock:
            tree = await self.checkout(commit)
            files = tuple(f for f in (await tree.git("ls-files", "-z")).split("\0") if f)
            notes: list[str] = []
            venv = await self._venv(wanted, notes)
            probe = Probe(
                root=tree.path,
                files=files,
                spawner=self.spawner,
                venv=venv,
                test_timeout=self.settings.test_timeout,
                timeout=self.settings.evolve.timeout,
                markers=self.settings.evolve.markers,
                goals=self.repository.path / GOALS_FILE,
            )
            return await self._run(commit, probe, wanted, notes)

    async def _venv(self, wanted: set[SignalKind], notes: list[str]) -> WorkspaceVenv | None:
        """The repository's venv with the tools ``wanted`` needs; a kind whose tool
        forgeline lacks is dropped from ``wanted`` with a note."""
        if not self.settings.workspace_venv:
            return None
        venv = await ensure_venv(self.repository.path)
        for kind, tool in TOOLS.items():
            if kind not in wanted:
                continue
            if kind == "type" and not typecheck.configured(self.checkout_path):
                continue
            try:
                await venv.seed([tool])
            except VenvError:
                wanted.discard(kind)
                notes.append(
                    f"{kind}: {tool} is not installed with forgeline, so this signal was "
                    f"not looked for (install it: pip install 'forgeline[evolve]')"
                )
        return venv

    async def _run(
        self, commit: str, probe: Probe, wanted: set[SignalKind], notes: list[str]
    ) -> Scan:
        findings: dict[SignalKind, Finding] = {}
        passing: tuple[str, ...] = ()
        failing: tuple[str, ...] = ()
        passed = 0
        if "test" in wanted:
            report = await tests.run_tests(probe)
            findings["test"] = tests.failing_tests(report, probe.files)
            passing, failing, passed = report.passing, report.failing, report.passed
        if "goal" in wanted:
            findings["goal"] = goal_signals.goals(probe.goals)
        if "type" in wanted:
            findings["type"] = await typecheck.type_errors(probe)
        if "lint" in wanted:
            findings["lint"] = await lint.lint_findings(probe)
        if "todo" in wanted:
            findings["todo"] = markers.todo_markers(probe)
        if "coverage" in wanted:
            findings["coverage"] = await uncovered.uncovered_functions(probe)

        def count(kind: SignalKind) -> int:
            return findings[kind].count if kind in findings else 0

        counts = SignalCounts(
            failing_tests=count("test"),
            passing_tests=passed,
            lint_findings=count("lint"),
            type_errors=count("type"),
            todos=count("todo"),
            uncovered_functions=count("coverage"),
            goals=count("goal"),
        )
        return Scan(
            commit=commit,
            signals=tuple(s for f in findings.values() for s in f.signals),
            counts=counts,
            notes=tuple(notes + [n for f in findings.values() for n in f.notes]),
            passing=frozenset(passing),
            failing=frozenset(failing),
        )
