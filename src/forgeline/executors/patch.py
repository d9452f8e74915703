"""The patch engine: land a code change in a git workspace, validated, or leave no trace.

A change is one of three shapes (defined in ``forgeline.llm.outputs``, since models answer
with them, and re-exported here):

- ``CodeChange``: whole-file writes, path + full content;
- ``EditChange``: search/replace blocks; each search text must match its file exactly once
  (an empty search text creates a file that does not exist yet);
- ``DiffChange``: a unified diff as ``git diff`` writes it (``a/`` and ``b/`` prefixes),
  checked with ``git apply --check`` and applied with ``git apply``.

``apply_change`` works in four steps:

1. **Plan, touching nothing.** Every path is checked with ``confined_path`` (inside the
   workspace, no ``.git`` or ``.forgeline`` component at any depth or in any case, not
   through a symlink out of it), every new content against ``max_file_bytes``; the
   search/replace blocks are matched and the new contents computed in memory; a diff is
   read with ``git apply --numstat`` and checked with ``git apply --check``. Any problem
   raises ``PatchError`` here and the tree is untouched.
2. **Snapshot.** The bytes and mode of every path the change touches (or the fact that it
   does not exist yet), the directories it will create, and ``git status``.
3. **Apply and validate.** The validator (``PythonValidator``: Python files compile, the
   test suite still collects) looks at the tree before and after. Collection imports the
   workspace's test modules; whatever they write outside the change's paths is undone
   afterwards (as in step 4), so a successful call leaves the tree as before plus the change.
4. **On any failure, roll back.** Every touched path gets its snapshot back (a file the
   change created is removed, with the directories it created); then, with git, tracked
   files that something else changed meanwhile (a test module run during collection) are
   checked out again and untracked files that were not there before are removed. Paths
   under ``.forgeline/`` (ignored) and untracked files that existed before are never
   touched; uncommitted edits that existed before are restored byte for byte, not reset to
   HEAD. ``git status`` must then read as before, or the error says the rollback was
   incomplete. The error is a ``PatchError`` naming the reason.

On success the caller gets an ``AppliedChange`` (the paths that changed) and commits it.
The engine takes no lock: a caller that can race with other writers holds
``workspace.lock`` around ``apply_change`` and its commit. ``revert_change`` undoes an
applied change that was not committed (the fix loop uses it to drop a failed attempt).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path, PurePosixPath

from forgeline.core.events import FileWrite
from forgeline.errors import ForgelineError, WorkspaceError
from forgeline.executors._tree import (
    Snapshot,
    clean_strays,
    differences,
    restore,
    take_snapshot,
)
from forgeline.executors.validation import PythonValidator, Validator
from forgeline.llm.outputs import Change, CodeChange, DiffChange, EditChange, SearchReplace
from forgeline.workspace.git import GitWorkspace, confined_path

__all__ = [
    "MAX_FILE_BYTES",
    "AppliedChange",
    "Change",
    "CodeChange",
    "DiffChange",
    "EditChange",
    "EmptyChangeError",
    "FileWrite",
    "PatchError",
    "PythonValidator",
    "SearchReplace",
    "Validator",
    "apply_change",
    "change_fingerprint",
    "nearest_lines",
    "plan_change",
    "plan_writes",
    "revert_change",
]


MAX_FILE_BYTES = 1024 * 1024
"""The default cap on the size of one file a change may write (``[coder] max_file_bytes``):
a model's runaway answer is refused, not committed and stored."""


class PatchError(ForgelineError):
    """A change was refused or rolled back; the message says why."""


class EmptyChangeError(PatchError):
    """The change would leave every file as it is."""


# --------------------------------------------------------------------------- changes


def change_fingerprint(change: Change) -> str:
    """A stable hash of what a change says (two equal proposals hash the same)."""
    body = f"{type(change).__name__}\n{change.model_dump_json(exclude={'summary'})}"
    return hashlib.sha256(body.encode()).hexdigest()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AppliedChange:
    """A change that landed in the working tree (not committed yet)."""

    paths: tuple[str, ...]
    """Every path whose content changed: created, modified or deleted, sorted."""
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    summary: str = ""
    _snapshot: Snapshot | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- planning


def _canonical(root: Path, relative: str) -> str:
    """The path relative to the root after ``confined_path``; refuses a symlink itself."""
    try:
        target = confined_path(root, relative)
    except WorkspaceError as exc:
        raise PatchError(f"refused: {exc}") from exc
    literal = root / PurePosixPath(relative.replace("\\", "/"))
    if literal.is_symlink():
        raise PatchError(f"refused: {relative!r} is a symlink; change the file it points to")
    if target.is_dir():
        raise PatchError(f"refused: {relative!r} is a directory, not a file")
    if target == root:
        raise PatchError(f"refused: {relative!r} names the workspace itself")
    return target.relative_to(root).as_posix()


def _read_text(root: Path, rel: str) -> str | None:
    path = root / rel
    if not path.is_file():
        return None
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PatchError(f"{rel} is not UTF-8 text; it cannot be edited by search/replace") from exc


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _occurrences(text: str, needle: str) -> list[int]:
    found: list[int] = []
    start = text.find(needle)
    while start != -1:
        found.append(start)
        start = text.find(needle, start + 1)
    return found


def nearest_lines(text: str, search: str, context: int = 2, max_windows: int = 20_000) -> str:
    """The lines of ``text`` most like ``search``, numbered, with ``context`` lines around."""
    lines = text.splitlines()
    if not lines:
        return "    (the file is empty)"
    wanted = search.strip("\n").splitlines() or [search]
    n = len(wanted)
    target = "\n".join(wanted)
    best, best_i = -1.0, 0
    for i in range(min(max(1, len(lines) - n + 1), max_windows)):
        matcher = SequenceMatcher(None, "\n".join(lines[i : i + n]), target, autojunk=False)
        if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, best_i = ratio, i
    start, end = max(0, best_i - context), min(len(lines), best_i + n + context)
    return "\n".join(f"{k + 1:>5} | {lines[k]}" for k in range(start, end))


def plan_writes(root: Path, change: CodeChange) -> dict[str, str]:
    """The checks whole-file writes must pass before anything is written: every path
    inside the workspace (no symlink, not a directory), each written once. Returns
    {canonical path: content}; raises ``PatchError`` saying what is wrong."""
    planned: dict[str, str] = {}
    for file in change.files:
        rel = _canonical(root, file.path)
        if rel in planned:
            raise PatchError(f"{file.path} is written twice in one change; write each file once")
        planned[rel] = file.content
    return planned


def _plan_edits(root: Path, change: EditChange) -> dict[str, str]:
    contents: dict[str, str | None] = {}
    total = len(change.edits)
    for index, edit in enumerate(change.edits, 1):
        rel = _canonical(root, edit.path)
        if rel not in contents:
            contents[rel] = _read_text(root, rel)
        current = contents[rel]
        where = f"search/replace block {index} of {total} ({edit.path})"
        if current is None:
            if edit.search:
                raise PatchError(
                    f"{where}: the file does not exist; to create it, give an empty search text"
                )
            contents[rel] = edit.replace
            continue
        if not edit.search:
            raise PatchError(
                f"{where}: the search text is empty but the file exists; "
                "quote the exact lines to replace"
            )
        found = _occurrences(current, edit.search)
        if not found:
            raise PatchError(
                f"{where}: the search text does not occur in the file. "
                f"The nearest lines are:\n{nearest_lines(current, edit.search)}\n"
                "Quote the file's lines exactly (whitespace included)."
            )
        if len(found) > 1:
            lines = ", ".join(str(_line_of(current, o)) for o in found[:10])
            raise PatchError(
                f"{where}: the search text occurs {len(found)} times (lines {lines}); "
                "include more surrounding lines so it matches exactly once"
            )
        at = found[0]
        contents[rel] = current[:at] + edit.replace + current[at + len(edit.search) :]
    return {rel: text for rel, text in contents.items() if text is not None}


_SYMLINK_MODE = re.compile(r"^(new file mode|new mode) 120000", re.MULTILINE)


def _parse_numstat(out: str) -> list[str]:
    tokens = out.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(tokens):
        entry = tokens[i]
        i += 1
        if not entry:
            continue
        parts = entry.split("\t", 2)
        if len(parts) != 3:
            raise PatchError(f"cannot read git's summary of the diff: {entry!r}")
        if parts[2]:
            paths.append(parts[2])
        else:  # a rename or copy: source and destination follow
            paths.extend(tokens[i : i + 2])
            i += 2
    return paths


def _diff_bytes(change: DiffChange) -> bytes:
    diff = change.diff if change.diff.endswith("\n") else change.diff + "\n"
    return diff.encode()


async def _plan_diff(workspace: GitWorkspace, change: DiffChange) -> list[str]:
    if not change.diff.strip():
        raise EmptyChangeError("the diff is empty")
    if "\0" in change.diff:
        raise PatchError("the diff contains a NUL byte")
    if _SYMLINK_MODE.search(change.diff):
        raise PatchError("refused: the diff creates a symlink; forgeline applies files only")
    data = _diff_bytes(change)
    try:
        out = await workspace.git("apply", "--numstat", "-z", "--recount", "-", input=data)
    except WorkspaceError as exc:
        raise PatchError(f"the diff cannot be read: {_git_reason(exc)}") from exc
    paths = list(dict.fromkeys(_canonical(workspace.path, p) for p in _parse_numstat(out)))
    if not paths:
        raise EmptyChangeError("the diff names no files")
    try:
        await workspace.git("apply", "--check", "--recount", "-", input=data)
    except WorkspaceError as exc:
        raise PatchError(f"the diff does not apply: {_git_reason(exc)}") from exc
    return paths


def _git_reason(exc: WorkspaceError) -> str:
    return str(exc).split(": ", 1)[-1]


# --------------------------------------------------------------------------- applying


def _read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8") if path.is_file() else None
    except UnicodeDecodeError:
        return None


def _check_size(rel: str, size: int, limit: int) -> None:
    if size > limit:
        raise PatchError(
            f"refused: {rel} would be {size:,} bytes, over the {limit:,}-byte limit on one "
            "file a change may write ([coder] max_file_bytes); write smaller files"
        )


async def plan_change(
    workspace: GitWorkspace, change: Change, *, max_file_bytes: int = MAX_FILE_BYTES
) -> tuple[list[str], dict[str, str]]:
    """Step 1, touching nothing: the paths the change touches and, for writes and edits,
    their new contents (none over ``max_file_bytes``). Raises ``PatchError``
    (``EmptyChangeError``) saying what is wrong."""
    root = workspace.path
    if isinstance(change, DiffChange):
        return await _plan_diff(workspace, change), {}
    if isinstance(change, EditChange):
        if not change.edits:
            raise EmptyChangeError("the change has no search/replace blocks")
        contents = _plan_edits(root, change)
    else:
        if not change.files:
            raise EmptyChangeError("the change writes no files")
        contents = plan_writes(root, change)
    for rel, text in contents.items():
        _check_size(rel, len(text.encode()), max_file_bytes)
    if all(_read_text_or_none(root / rel) == text for rel, text in contents.items()):
        raise EmptyChangeError("the change leaves every file as it is")
    return list(contents), contents


async def _write(workspace: GitWorkspace, change: Change, contents: dict[str, str]) -> None:
    if isinstance(change, DiffChange):
        try:
            await workspace.git(
                "apply", "--recount", "--whitespace=nowarn", "-", input=_diff_bytes(change)
            )
        except WorkspaceError as exc:
            raise PatchError(f"the diff does not apply: {_git_reason(exc)}") from exc
        return
    try:
        workspace.write_files(contents.items())
    except (OSError, WorkspaceError) as exc:
        raise PatchError(f"writing the change failed: {exc}") from exc


async def _restore_or_explain(workspace: GitWorkspace, snap: Snapshot) -> None:
    problems = await restore(workspace, snap)
    if problems:
        raise PatchError(
            "the rollback is incomplete, check the workspace by hand: " + "; ".join(problems)
        )


async def apply_change(
    workspace: GitWorkspace,
    change: Change,
    *,
    validate: Validator,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> AppliedChange:
    """Apply ``change``, validate the result and return what changed; else roll back.

    Raises ``PatchError`` (``EmptyChangeError`` when the change would change nothing) with
    the reason; after an error the tree is as it was before the call. No file it writes
    may be larger than ``max_file_bytes``. The caller commits.
    """
    paths, contents = await plan_change(workspace, change, max_file_bytes=max_file_bytes)
    try:
        snap = await take_snapshot(workspace, paths)
    except ForgelineError as exc:
        raise PatchError(f"the change could not be checked: {exc}") from exc
    try:
        baseline = await validate.before(workspace, paths)
        await _write(workspace, change, contents)
        changed, created, deleted = differences(workspace.path, snap)
        if not changed:
            raise EmptyChangeError("the change leaves every file as it is")
        for rel in changed:  # a diff's result is known only now
            target = workspace.path / rel
            if target.is_file():
                _check_size(rel, target.stat().st_size, max_file_bytes)
        problems = await validate.after(workspace, changed, baseline)
        if problems:
            raise PatchError("the change was rolled back: " + "; ".join(problems))
        # Validation ran the workspace's test modules: drop what they wrote elsewhere.
        leftovers = await clean_strays(workspace, snap)
        if leftovers:
            raise PatchError("the validation left files behind: " + "; ".join(leftovers))
    except BaseException as exc:
        try:
            await _restore_or_explain(workspace, snap)
        except (PatchError, WorkspaceError) as rollback:
            if not isinstance(exc, Exception):  # cancelled: stay cancelled
                raise exc from rollback
            raise PatchError(f"{exc}; and {rollback}") from exc
        if isinstance(exc, ForgelineError | OSError) and not isinstance(exc, PatchError):
            raise PatchError(f"the change was rolled back: {exc}") from exc
        raise
    return AppliedChange(
        paths=tuple(changed),
        created=tuple(created),
        deleted=tuple(deleted),
        summary=change.summary,
        _snapshot=snap,
    )


async def revert_change(workspace: GitWorkspace, applied: AppliedChange) -> None:
    """Undo an applied change that was not committed: the tree reads as before it."""
    if applied._snapshot is None:
        raise PatchError("this AppliedChange carries no snapshot; it cannot be reverted")
    try:
        await _restore_or_explain(workspace, applied._snapshot)
    except WorkspaceError as exc:
        raise PatchError(f"the revert failed: {exc}") from exc
