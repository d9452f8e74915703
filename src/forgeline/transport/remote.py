"""Workers without a shared filesystem: the repositories come from a git remote.

With ``[transport] git_remote`` set, the repository named ``R`` lives at
``<git_remote>/R`` (a directory of bare repositories, or a URL prefix git can push to),
and every machine keeps a clone of its own under its workspaces root:

- **submitting** (``publish_task``): the submitter pushes the new task's branch
  ``forgeline/<task>`` there (which carries its base commit's history), making the bare
  repository first when the remote is a local path and it is missing;
- **before a stage** (``RemoteWorkspaces.sync``): the worker makes a repository of its
  own when it has none, fetches the task branch into it, and puts the task's worktree at
  the task's last recorded commit (made from the branch when absent), as ``resume`` does;
- **each commit** (``PublishingWorkspace.commit``): pushed at once, with a lease on the
  commit the stage started from, before the stage records it. If the branch moved in the
  remote meanwhile (a stage of the same task committed on another machine) or the remote
  cannot be reached, the local commit is dropped and ``RemoteError`` is raised: the worker
  retries the message after a backoff, from the then recorded commit. So the recorded
  head is always in the remote, and commits made on two machines never fork the branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from forgeline.core.task import TaskState
from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.layout import Workspaces

FETCH_WAITS = (0.2, 0.5, 1.0, None)
"""Seconds between tries to fetch a task branch the remote does not have yet (None: give
up, and the worker retries the message later)."""
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


class RemoteError(WorkspaceError):
    """The git remote refused a push (the branch moved) or could not be reached, or does
    not hold what the task recorded yet. A worker tries the message again later
    (``failures.escalates``)."""


def remote_url(git_remote: str, repository: str) -> str:
    """Where the repository named ``repository`` lives in the remote."""
    return f"{git_remote.rstrip('/')}/{repository}"


def _local_path(url: str) -> Path | None:
    """The directory a remote on this machine names (a path or ``file://``), else None."""
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    if "://" in url or _SCP_LIKE.match(url):
        return None
    return Path(url)


async def publish_task(workspaces: Workspaces, git_remote: str, state: TaskState) -> None:
    """Push the submitted task's branch to the remote (see the module's text)."""
    url = remote_url(git_remote, state.repository)
    bare = _local_path(url)
    if bare is not None and not bare.exists():
        try:
            bare.mkdir(parents=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the git remote {bare}: {exc}") from exc
        await GitWorkspace(bare).git("init", "-q", "--bare", "-b", "main")
    repository = workspaces.repository(state.repository)
    try:
        await repository.git("push", "-q", url, f"{state.branch}:refs/heads/{state.branch}")
    except WorkspaceError as exc:
        raise WorkspaceError(
            f"cannot push task {state.task_id}'s branch to the git remote {url} "
            f"([transport] git_remote): {exc}"
        ) from exc


class PublishingWorkspace(GitWorkspace):
    """A task's worktree whose commits go to the remote before anything records them."""

    def __init__(self, path: Path, url: str, branch: str) -> None:
        super().__init__(path)
        self.url = url
        self.branch = branch

    async def commit(self, message: str, paths: Sequence[str] | None = None) -> str | None:
        before = await self.head()
        commit = await super().commit(message, paths)
        if commit is None:
            return None
        ref = f"refs/heads/{self.branch}"
        try:
            await self.git(
                "push", "-q", self.url, f"{commit}:{ref}", f"--force-with-lease={ref}:{before}"
            )
        except WorkspaceError as exc:
            with contextlib.suppress(WorkspaceError):
                await self.git("reset", "-q", "--hard", before)
            raise RemoteError(
                f"the commit was not pushed to {self.url} (the task branch {self.branch} moved "
                f"there since {before[:12]}, or the remote cannot be reached), so it is "
                f"dropped and the stage is tried again: {exc}"
            ) from exc
        return commit


@dataclass(frozen=True)
class RemoteWorkspaces(Workspaces):
    """The repositories under ``root``, each a clone of ``<git_remote>/<name>``."""

    git_remote: str = ""

    def url(self, repository: str) -> str:
        return remote_url(self.git_remote, repository)

    def worktree(self, state: TaskState) -> GitWorkspace:
        if state.checkout is not None:  # recorded by an older forgeline: a fixed path
            return super().worktree(state)
        path = self.worktree_path(state.repository, state.task_id)
        return PublishingWorkspace(path, self.url(state.repository), state.branch)

    async def sync(self, state: TaskState) -> GitWorkspace:
        """The task's worktree on this machine at its last recorded commit, fetched from
        the remote (the clone made first when this machine has none)."""
        url = self.url(state.repository)
        repository = self.repository(state.repository)
        if not (repository.path / ".git").exists():  # this machine's clone, made once
            await repository.ensure()  # forgeline's own directories stay out of git
        ref = f"refs/heads/{state.branch}"
        fetched = f"+{ref}:refs/remotes/origin/{state.branch}"
        for wait in FETCH_WAITS:  # the submitter pushes the branch just after recording
            try:
                await self._remote(repository, "fetch", "-q", url, fetched)
                break
            except RemoteError:
                if wait is None:
                    raise
                await asyncio.sleep(wait)
        if not await self._has(repository, state.head):
            raise RemoteError(
                f"the commit {state.head[:12]} recorded for task {state.task_id} is not in "
                f"{url} yet"
            )
        worktree = self.worktree(state)
        if not worktree.path.is_dir():
            await repository.git("worktree", "prune")
            await repository.git("branch", "-f", state.branch, state.head)
            await repository.attach_worktree(state.branch, worktree.path)
        await worktree.reset_to(state.branch, state.head)
        return worktree

    @staticmethod
    async def _has(repository: GitWorkspace, commit: str) -> bool:
        found = await repository.git(
            "rev-parse", "-q", "--verify", f"{commit}^{{commit}}", check=False
        )
        return bool(found.strip())

    @staticmethod
    async def _remote(repository: GitWorkspace, *args: str) -> None:
        try:
            await repository.git(*args)
        except WorkspaceError as exc:
            raise RemoteError(f"the git remote did not answer as expected: {exc}") from exc
