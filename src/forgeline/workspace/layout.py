"""Where repositories and task worktrees are: names in events, paths on this machine.

Events name a task's repository by its path relative to the workspaces root
(``Settings.workspaces_root``), never by an absolute path, so another process or machine
that has the same root can act on them. The task's worktree follows from the root, the
repository and the task id: ``<root>/<repository>/.forgeline/worktrees/<task id>``, on
branch ``forgeline/<task id>``. Tasks recorded before repositories had names keep the
checkout path they recorded (``TaskState.checkout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgeline.core.task import TaskState
from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace

WORKTREES = Path(".forgeline") / "worktrees"


@dataclass(frozen=True)
class Workspaces:
    """The repositories under one root."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.expanduser().resolve())

    def name_of(self, repository: str | Path) -> str:
        """The name (``a/b``, relative to the root) of ``repository``, given by name or by
        path; a repository outside the root is refused."""
        try:
            given = Path(repository).expanduser()
        except RuntimeError:  # "~name/..." where no user is called name
            raise WorkspaceError(
                f"the repository {repository}: {str(repository).split('/')[0]} is no user's "
                "home directory; give a name or a path inside the workspaces root"
            ) from None
        path = (given if given.is_absolute() else self.root / given).resolve()
        if path == self.root or self.root not in path.parents:
            raise WorkspaceError(
                f"the repository {repository} is not inside the workspaces root {self.root}: "
                "give one inside it, or set workspaces_root (FORGELINE_WORKSPACES_ROOT) to a "
                "directory that holds it"
            )
        return path.relative_to(self.root).as_posix()

    def repository(self, name: str) -> GitWorkspace:
        return GitWorkspace(self.root / name)

    def worktree_path(self, repository: str, task_id: str) -> Path:
        return self.root / repository / WORKTREES / task_id

    def worktree(self, state: TaskState) -> GitWorkspace:
        """The task's checkout on this machine."""
        if state.checkout is not None:
            return GitWorkspace(Path(state.checkout))
        return GitWorkspace(self.worktree_path(state.repository, state.task_id))

    async def restore_worktree(self, state: TaskState) -> GitWorkspace:
        """Make the task's worktree again from its branch (someone deleted the
        directory); a ``WorkspaceError`` saying what is missing when that cannot be."""
        worktree = self.worktree(state)
        if state.checkout is not None:
            raise WorkspaceError(
                f"the task's checkout {worktree.path} is gone, and a task recorded by an "
                "older forgeline cannot have it made again"
            )
        repository = self.repository(state.repository)
        if not repository.path.is_dir():
            raise WorkspaceError(f"the task's repository {repository.path} is gone")
        await repository.attach_worktree(state.branch, worktree.path)
        return worktree
