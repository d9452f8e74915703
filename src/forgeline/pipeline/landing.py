"""How a change reaches the task's branch: checked before it is written, landed through the
patch engine, committed with a message forgeline writes from the step.

The coder and the fixer share this (``Lander``), whatever back-end proposed the change.
Nothing here asks a model: a refused or rolled-back change is an exception with the
reason, and the caller decides whether to ask again (in a fresh conversation) or fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic_ai import ModelRetry

from forgeline.errors import StageError, WorkspaceError
from forgeline.executors.patch import (
    MAX_FILE_BYTES,
    EmptyChangeError,
    PatchError,
    apply_change,
    plan_change,
)
from forgeline.executors.validation import PythonValidator, source_problem
from forgeline.llm.outputs import Change, CodeChange, DiffChange, EditChange
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.workspace.git import GitWorkspace, confined_path


class NoProgressError(StageError):
    """The change would leave the code as it is, or as an earlier round left it."""


class UnchangedError(ModelRetry):
    """The answer leaves every file as it is, where that cannot be the answer (the
    fixer's: the tests fail, so the same files are no fix)."""


class RolledBackError(StageError):
    """The patch engine refused or rolled back the change; ``reason`` says why."""

    def __init__(self, what: str, reason: str) -> None:
        self.reason = reason.removeprefix("the change was rolled back: ")
        super().__init__(f"{what}: the change was rolled back: {self.reason}")


@dataclass(frozen=True)
class Landed:
    """A change committed on the task branch (``commit == base`` when there was none)."""

    base: str
    commit: str
    files: list[str]
    change: Change | None = None
    backend: str = "llm"
    discarded: list[str] = field(default_factory=list)
    """Files the step's terminal commands wrote, dropped before the change landed."""


def _empty_hint(change: Change) -> str | None:
    """What to say when the answer proposes nothing at all."""
    if isinstance(change, CodeChange) and not change.files:
        return "the change is empty: return at least one file with its full content"
    if isinstance(change, EditChange) and not change.edits:
        return "the change is empty: return at least one search/replace block"
    if isinstance(change, DiffChange) and not change.diff.strip():
        return "the diff is empty: return a unified diff that changes at least one file"
    return None


_FORMAT_HINT: dict[type[object], str] = {
    CodeChange: "use a relative path inside the repository, once each",
    EditChange: "quote the file's current text exactly, with paths inside the repository",
    DiffChange: "make the diff against the files as they are now (read them first), with "
    "a/ and b/ paths inside the repository",
}


async def check_change(
    workspace: GitWorkspace,
    change: Change,
    *,
    must_change: bool = False,
    protected: Sequence[str] = (),
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Change:
    """Raise ``ModelRetry`` saying what is wrong with ``change``, else return it.

    The patch engine's own pre-write checks (touching nothing). A change that would leave
    every file as it is passes unless ``must_change`` (the fixer's: ``UnchangedError``).
    ``protected`` files (the spec's checks) may not be written: they are the request's
    own tests, and a fix that edits them weakens them.
    """
    hint = _empty_hint(change)
    if hint is not None:
        raise ModelRetry(hint)
    try:
        _, contents = await plan_change(workspace, change, max_file_bytes=max_file_bytes)
    except EmptyChangeError as exc:
        if isinstance(change, DiffChange):  # a diff that names no file is malformed
            raise ModelRetry(f"{exc}; {_FORMAT_HINT[DiffChange]}") from exc
        if must_change:
            raise UnchangedError(
                f"{exc}, and the tests still fail: change the code, or a test whose "
                "expected value contradicts the request"
            ) from exc
        return change
    except PatchError as exc:
        raise ModelRetry(f"{exc}; {_FORMAT_HINT[type(change)]}") from exc
    touched = [p for p in protected if p in contents]
    if touched:
        raise ModelRetry(
            f"{', '.join(touched)} holds the request's own checks and may not be changed: "
            "change the code so that it passes them"
        )
    for rel, text in contents.items():
        if rel.endswith(".py") and (problem := source_problem(rel, text)):
            raise ModelRetry(problem)
    return change


def require_planned(change: Change, planned: Sequence[str], workspace: GitWorkspace) -> None:
    """Raise ``ModelRetry`` naming the planned files that neither exist nor are created by
    ``change`` (a diff is not read for this)."""
    if isinstance(change, DiffChange):
        return
    if isinstance(change, CodeChange):
        written = {f.path for f in change.files}
    else:
        written = {e.path for e in change.edits if not e.search}
    missing = [p for p in planned if p not in written and not exists(workspace, p)]
    if missing:
        raise ModelRetry(
            f"this step creates {', '.join(missing)}: answer with "
            f"{'its' if len(missing) == 1 else 'their'} full content"
        )


def exists(workspace: GitWorkspace, path: str) -> bool:
    """Whether ``path`` is a file of the workspace (a path outside it counts as existing:
    nothing is moved there, and the pre-write checks say what is wrong with it)."""
    try:
        return confined_path(workspace.path, path).exists()
    except WorkspaceError:
        return True


class Lander:
    """Lands changes on a stage run's task branch: the one place the coder and the fixer
    write files."""

    def __init__(self, agent: StageAgent) -> None:
        self.services = agent.services

    @property
    def max_file_bytes(self) -> int:
        return self.services.settings.coder.max_file_bytes

    async def land(self, run: StageRun, change: Change | None, what: str) -> Landed:
        """Apply ``change`` through the patch engine (validated, rolled back exactly when
        it fails) and commit it as ``forgeline <stage>: <what>``.

        Whatever the step's commands left in the tree is dropped first, so only the
        change, checked and validated, lands."""
        workspace = run.workspace
        async with workspace.lock:
            await workspace.checkout(run.state.branch)
            base = await workspace.head()
            discarded = await self._discard_stray(run, base)
            if change is None:
                return Landed(base, base, [], discarded=discarded)
            validator = PythonValidator(self.services.spawner, sync=run.venv)
            try:
                applied = await apply_change(
                    workspace, change, validate=validator, max_file_bytes=self.max_file_bytes
                )
            except EmptyChangeError as exc:
                raise NoProgressError(
                    f"{what}: no progress, the change leaves every file as it is"
                ) from exc
            except PatchError as exc:
                raise RolledBackError(what, str(exc)) from exc
            files = list(applied.paths)
            commit = await run.commit(files, what)
        return Landed(base, commit, files, change, discarded=discarded)

    async def land_files(self, run: StageRun, files: Mapping[str, str], what: str) -> Landed:
        """Whole files (a chosen candidate and its tests) landed like any change."""
        change = CodeChange(files=tuple({"path": p, "content": t} for p, t in files.items()))
        try:
            return await self.land(run, change, what)
        except NoProgressError:
            return await self.land(run, None, what)

    async def _discard_stray(self, run: StageRun, base: str) -> list[str]:
        """Files written outside the patch engine (by the step's terminal commands),
        removed: the tree goes back to ``base`` (the caller holds the lock)."""
        if not run.commands_ran:
            return []
        stray = await run.workspace.dirty_files()
        if stray:
            await run.workspace.reset_to(run.state.branch, base)
        return stray

    def context_files(self, run: StageRun, focus: Sequence[str] = (), *, tools: bool) -> str:
        """The current files for the prompt: ``focus`` first, then the task's files, within
        ``[coder] context_chars``; files that do not fit are named (the tools read them)."""
        budget = self.services.settings.coder.context_chars
        shown: dict[str, str] = {}
        left_out: list[str] = []
        used = 0
        for name in dict.fromkeys((*focus, *run.state.files)):
            try:
                text = run.workspace.read_file(name)
            except WorkspaceError:
                continue
            if text is None:
                continue
            if used + len(text) > budget:
                left_out.append(name)
                continue
            shown[name] = text
            used += len(text)
        block = prompts.files_block(shown)
        if left_out:
            how = "read them with read_file" if tools else "not shown"
            block += f"\n\nToo long for this prompt ({how}): {', '.join(left_out)}"
        return block
