"""Merging a completed change into the repository's main branch.

What is merged is the commit the change completed as (the one its tests and review
passed), with ``--no-ff`` so the main branch's history shows the change as one merge
naming it. Where the main branch is checked out in the repository, the merge happens
there (git refuses, and nothing changes, when it would overwrite a person's uncommitted
edits); elsewhere it happens in a temporary worktree. A merge that conflicts is aborted
and the change stays completed: the message says what to do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from forgeline.core import rsi
from forgeline.core.events import ChangeDeclined, ChangeMerged, ctrm_stream
from forgeline.core.rsi import RSIChange
from forgeline.errors import ForgelineError, WorkspaceError
from forgeline.store.base import EventStore
from forgeline.workspace.git import GitWorkspace

ApprovedBy = Literal["person", "auto-merge"]

MERGE_DIR = ".forgeline/worktrees/evolve-merge"


class MergeError(ForgelineError):
    """A change could not be merged into the main branch; nothing was changed."""


def merge_message(change: RSIChange) -> str:
    return (
        f"forgeline evolve: merge {change.change_id} ({change.target_module})\n\n"
        f"{change.summary}\n\nChange: {change.change_id}\nTask: {change.task_id}\n"
        f"Diff sha256: {change.generated_hash}\n"
    )


async def merge_change(repository: GitWorkspace, change: RSIChange) -> str:
    """Merge ``change``'s commit into its main branch; the branch's new tip."""
    if change.status != "completed" or change.commit is None:
        raise MergeError(
            f"change {change.change_id} is {change.status}: only a completed change can be "
            "merged (`forgeline changes show` says why it is not)"
        )
    branch = change.branch
    tip = await _tip(repository, branch)
    if await _contains(repository, branch, change.commit):
        return tip  # merged before (a crash between the merge and its record)
    if await repository.current_branch() == branch:
        await _merge_in(repository, change)
        return await repository.head()
    path = repository.path / MERGE_DIR
    await repository.git("worktree", "remove", "--force", str(path), check=False)
    try:
        await repository.git("worktree", "add", "-q", str(path), branch)
    except WorkspaceError as exc:
        raise MergeError(f"cannot check out {branch} to merge {change.change_id}: {exc}") from exc
    try:
        tree = GitWorkspace(path)
        await _merge_in(tree, change)
        return await tree.head()
    finally:
        await repository.git("worktree", "remove", "--force", str(path), check=False)


async def _merge_in(tree: GitWorkspace, change: RSIChange) -> None:
    assert change.commit is not None
    try:
        await tree.git("merge", "-q", "--no-ff", "-m", merge_message(change), change.commit)
    except WorkspaceError as exc:
        await tree.git("merge", "--abort", check=False)
        raise MergeError(
            f"{change.change_id} does not merge into {change.branch} cleanly ({exc}); "
            f"nothing was merged. Commit or stash your own edits and approve again, or "
            f"decline it (forgeline changes reject {change.change_id}) and let the daemon "
            "propose it again on the new main branch"
        ) from exc


async def _tip(repository: GitWorkspace, branch: str) -> str:
    out = await repository.git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
    if not out.strip():
        raise MergeError(f"the repository has no branch {branch!r} to merge into")
    return out.strip()


async def _contains(repository: GitWorkspace, branch: str, commit: str) -> bool:
    probe = await repository.git("branch", "--contains", commit, "--list", branch, check=False)
    return bool(probe.strip())


async def approve_change(
    store: EventStore,
    repository: GitWorkspace,
    change: RSIChange,
    approved_by: ApprovedBy,
    *,
    at: datetime,
) -> RSIChange:
    """Merge a completed change and record ``rsi.change.merged``; the change after."""
    commit = await merge_change(repository, change)
    merged = ChangeMerged(branch=change.branch, commit=commit, approved_by=approved_by)
    events = rsi.decide(
        change,
        merged,
        correlation_id=change.change_id,
        causation_id=None,
        actor=approved_by,
        at=at,
    )
    recorded = await store.append(ctrm_stream(change.change_id), events)
    return rsi.evolve(change, recorded[0])


async def decline_change(
    store: EventStore, change: RSIChange, reason: str, *, at: datetime
) -> RSIChange:
    """Record that a person declined the change (it is never merged)."""
    if not rsi.allowed(change, ChangeDeclined(reason=reason)):
        raise MergeError(
            f"change {change.change_id} is {change.status}: only an open change can be declined"
        )
    events = rsi.decide(
        change,
        ChangeDeclined(reason=reason),
        correlation_id=change.change_id,
        causation_id=None,
        actor="person",
        at=at,
    )
    recorded = await store.append(ctrm_stream(change.change_id), events)
    return rsi.evolve(change, recorded[0])
