"""A git repository a task works in: branch per task, commits per stage, confined writes.

Git is forgeline's own trusted tool, so it runs directly (argv, no shell); code from the
workspace never runs here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from forgeline.errors import WorkspaceError
from forgeline.workspace.lock import CheckoutLock

IDENTITY = ("-c", "user.name=forgeline", "-c", "user.email=forgeline@localhost")
IGNORED = (".forgeline/", "__pycache__/", ".pytest_cache/", "*.pyc")
# Paths an agent may never write, whatever the model says.
PROTECTED = (".git", ".forgeline")


def confined_path(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root`` or raise ``WorkspaceError`` saying why not."""
    if not relative or not relative.strip():
        raise WorkspaceError("empty path")
    if "\x00" in relative:
        raise WorkspaceError(f"path {relative!r} contains a NUL byte")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute():
        raise WorkspaceError(f"path {relative!r} is absolute; give a path inside the workspace")
    if ".." in pure.parts:
        raise WorkspaceError(f"path {relative!r} leaves the workspace ('..')")
    for part in pure.parts:
        # At any depth and in any case (a nested repository's hooks run too; ``.GIT`` is
        # ``.git`` to git), also as git itself reads names (trailing dots and spaces dropped,
        # the 8.3 alias ``git~1``): such a path never reaches the tree.
        name = part.rstrip(". ").casefold() or part
        if name in PROTECTED or name == "git~1":
            raise WorkspaceError(f"path {relative!r} is inside {part}/, which is not writable")
    root = root.resolve()
    target = (root / pure).resolve()  # follows symlinks already in the workspace
    if target != root and root not in target.parents:
        raise WorkspaceError(f"path {relative!r} resolves outside the workspace (a symlink?)")
    return target


class GitWorkspace:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    def __repr__(self) -> str:
        return f"GitWorkspace({str(self.path)!r})"

    @property
    def lock(self) -> CheckoutLock:
        """Serializes checkout, writes, commits and test runs in this checkout, within the
        process and across processes (``async with workspace.lock:``)."""
        return CheckoutLock(self.path)

    async def git(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *IDENTITY,
                *args,
                cwd=self.path,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            )
        except (FileNotFoundError, NotADirectoryError) as exc:
            if self.path.is_dir():
                raise WorkspaceError(f"git cannot be run: {exc}") from exc  # no git at all
            raise WorkspaceError(f"{self.path} does not exist (was it deleted?)") from exc
        out, err = await proc.communicate(input)
        if check and proc.returncode != 0:
            message = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
            raise WorkspaceError(f"git {' '.join(args)} failed in {self.path}: {message}")
        return out.decode(errors="replace")

    # ------------------------------------------------------------------ setup

    async def ensure(self) -> None:
        """Create the directory and repository if absent.

        A repository forgeline creates gets a first commit holding whatever the directory
        already had (a forgeline.toml, say), so the task branch starts from it. An existing
        repository's files are never committed on the user's behalf. A repository is never
        created inside another (``git rev-parse`` finds the enclosing one): a subdirectory
        of a work tree, or a new directory inside one, is refused naming the repository's
        top level; so is a bare repository (or a ``.git`` directory), which has no work
        tree to write in.
        """
        inside = await self.check()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace {self.path}: {exc}") from exc
        created = not inside
        if created:
            await self.git("init", "-q", "-b", "main")
        exclude = Path((await self.git("rev-parse", "--git-path", "info/exclude")).strip())
        exclude = exclude if exclude.is_absolute() else self.path / exclude
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text() if exclude.exists() else ""
        missing = [p for p in IGNORED if p not in text.splitlines()]
        if missing:
            exclude.write_text(
                text + ("" if text.endswith("\n") or not text else "\n") + "\n".join(missing) + "\n"
            )
        if not await self.has_commits():
            if created:
                await self.git("add", "-A")
            await self.git("commit", "-q", "--allow-empty", "-m", "forgeline: initial commit")

    async def check(self) -> bool:
        """Refuse what ``ensure`` refuses, creating nothing: a file, a bare repository (or
        a ``.git`` directory), a directory inside another repository's work tree. True
        when the path is a repository's top level already."""
        existing = next(p for p in (self.path, *self.path.parents) if p.exists())
        if not existing.is_dir():
            raise WorkspaceError(f"cannot use {self.path} as a workspace: {existing} is a file")
        probe = GitWorkspace(existing)
        try:
            flags = await probe.git("rev-parse", "--is-bare-repository", "--is-inside-git-dir")
        except WorkspaceError as exc:
            if "not a git repository" not in str(exc):
                raise  # a repository git refuses to use (its owner, say): git says why
            flags = ""
        if "true" in flags.split():
            raise WorkspaceError(
                f"{self.path} is a bare git repository or inside a .git directory: it has no "
                "work tree to write in. Clone it and use the clone "
                f"(git clone {existing} DIR, then --workspace DIR)"
            )
        if flags:
            top = Path((await probe.git("rev-parse", "--show-toplevel")).strip()).resolve()
            if top != self.path:
                raise WorkspaceError(
                    f"{self.path} is inside the git repository {top}, and forgeline works on "
                    f"a whole repository (it never creates one inside another): use "
                    f"--workspace {top}, or a directory outside it"
                )
        return bool(flags)

    async def has_commits(self) -> bool:
        return bool((await self.git("rev-parse", "--verify", "-q", "HEAD", check=False)).strip())

    async def head(self) -> str:
        return (await self.git("rev-parse", "HEAD")).strip()

    async def current_branch(self) -> str:
        return (await self.git("rev-parse", "--abbrev-ref", "HEAD")).strip()

    async def status(self) -> dict[str, str]:
        """``git status`` as {path: two-letter code}; untracked files listed one by one."""
        out = await self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        tokens = out.split("\0")
        status: dict[str, str] = {}
        i = 0
        while i < len(tokens):
            entry = tokens[i]
            i += 1
            if len(entry) < 4:
                continue
            code, path = entry[:2], entry[3:]
            status[path] = code
            if code[0] in "RC":  # a rename or copy: the source path follows
                i += 1
        return status

    async def dirty_files(self) -> list[str]:
        return list(await self.status())

    async def add_worktree(
        self, branch: str, path: Path, base: str | None = None
    ) -> tuple[GitWorkspace, str]:
        """A new worktree at ``path`` on a new ``branch`` from ``base`` (default HEAD);
        returns it and the base.

        Each task works in its own worktree, so parallel tasks on one repository never
        touch each other's files or branches, and the user's own checkout is left alone
        (its uncommitted changes are simply not part of the task).
        """
        base = base or await self.head()
        await self.git("worktree", "add", "-q", "-b", branch, str(path), base)
        return GitWorkspace(path), base

    async def attach_worktree(self, branch: str, path: Path) -> GitWorkspace:
        """A worktree at ``path`` on the existing ``branch`` (after its directory was
        deleted: git's record of the old one is pruned first)."""
        await self.git("worktree", "prune")
        if not await self.git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False):
            raise WorkspaceError(
                f"the task's branch {branch} is gone from {self.path}, so its worktree "
                f"{path} cannot be made again"
            )
        await self.git("worktree", "add", "-q", str(path), branch)
        return GitWorkspace(path)

    async def remove_worktree(self, branch: str, path: Path) -> None:
        """Remove a worktree made by ``add_worktree`` and its branch (as far as they
        exist): what a task that was never recorded left behind."""
        await self.git("worktree", "remove", "--force", str(path), check=False)
        await self.git("branch", "-q", "-D", branch, check=False)

    async def checkout(self, branch: str) -> None:
        if await self.current_branch() != branch:
            await self.git("checkout", "-q", branch)

    async def reset_to(self, branch: str, commit: str) -> None:
        """Put ``branch`` at ``commit`` with a clean tree (drops unrecorded work of a crash);
        ignored files stay."""
        if await self.current_branch() != branch:
            await self.git("checkout", "-q", "-f", branch)
        await self.git("reset", "-q", "--hard", commit)
        await self.git("clean", "-q", "-fd")

    # ------------------------------------------------------------------ changes

    def write_files(self, files: Iterable[tuple[str, str]]) -> list[str]:
        """Write (path, content) pairs inside the workspace; all paths are checked first."""
        planned = [(rel, confined_path(self.path, rel), content) for rel, content in files]
        written: list[str] = []
        for rel, target, content in planned:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            written.append(str(PurePosixPath(rel.replace("\\", "/"))))
        return written

    def read_file(self, relative: str, limit: int = 20_000) -> str | None:
        target = confined_path(self.path, relative)
        if not target.is_file():
            return None
        text = target.read_text(encoding="utf-8", errors="replace")
        return text if len(text) <= limit else text[:limit] + "\n... (truncated)\n"

    async def commit(self, message: str, paths: Sequence[str] | None = None) -> str | None:
        """Commit ``paths`` (or everything); return the new commit, or None if nothing changed."""
        await self.git("add", "-A", "--", *(paths or ["."]))
        staged = await self.git("diff", "--cached", "--name-only")
        if not staged.strip():
            return None
        await self.git("commit", "-q", "-m", message)
        return await self.head()

    async def diff(self, base: str, head: str = "HEAD") -> str:
        return await self.git("diff", base, head)

    async def diff_sha256(self, base: str, head: str) -> str:
        return hashlib.sha256((await self.diff(base, head)).encode()).hexdigest()

    async def log(self, base: str, head: str = "HEAD") -> list[tuple[str, str]]:
        out = await self.git("log", "--reverse", "--format=%h %s", f"{base}..{head}")
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]  # type: ignore[misc]
