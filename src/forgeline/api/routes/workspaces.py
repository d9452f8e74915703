"""Workspaces: the repositories under the workspaces root, files uploaded into one before
a task, and a task's worktree (its files, one file, its diff, a ``.tar.gz``).

Every path is confined: a repository must resolve inside the workspaces root (no ``..``,
no symlink out, no name starting with a dot, which is forgeline's own), and a file path
inside its repository or worktree (``confined_path``). An upload is checked whole
(count, size, type, paths) before anything is written; a refused one writes nothing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response

from forgeline.api.context import Server
from forgeline.api.deps import ReadKey, ServerDep, WriteKey
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.schemas import DiffOut, FileContent, FileEntry, UploadOut, WorkspaceOut
from forgeline.core.task import TaskState
from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace, confined_path

router = APIRouter(tags=["workspaces"], responses=answers(*KEYED, 400, 403, 404, 413, 415, 422))

SKIPPED = {".git", ".forgeline", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
MAX_ENTRIES = 5000
MAX_DIFF = 2 * 1024 * 1024


def repository_name(server: Server, given: str) -> str:
    """The repository ``given`` names (a name or a path), inside the workspaces root."""
    if "\x00" in given:
        raise ApiError(400, "a workspace name must not contain a NUL character")
    try:
        name = server.runtime.workspaces.name_of(given)
    except (ValueError, OSError) as exc:
        raise ApiError(400, f"cannot use {given!r} as a workspace: {exc}") from None
    if any(part.startswith(".") for part in PurePosixPath(name).parts):
        raise ApiError(
            400,
            f"workspace {given!r}: a name starting with '.' is forgeline's own, not a repository's",
        )
    return name


@router.get("/api/workspaces", response_model=list[WorkspaceOut])
async def workspaces(server: ServerDep, key: ReadKey) -> list[WorkspaceOut]:
    """The repositories directly under the workspaces root."""
    root = server.runtime.workspaces.root
    found = sorted(
        p.name
        for p in (root.iterdir() if root.is_dir() else ())
        if not p.name.startswith(".") and p.is_dir() and (p / ".git").exists()
    )
    return [WorkspaceOut(name=name) for name in found]


@router.post("/api/workspaces/{name}/files", response_model=UploadOut, status_code=201)
async def upload(
    name: str,
    files: Annotated[
        list[UploadFile], File(min_length=1, description="Each file's name is its path.")
    ],
    server: ServerDep,
    key: WriteKey,
) -> UploadOut:
    """Put files into a repository (created if absent) and commit them, so the next task
    on it starts with them. Text files of the allowed types only."""
    config = server.config
    if len(files) > config.max_upload_files:
        raise ApiError(413, f"{len(files)} files: at most {config.max_upload_files} at once")
    repo_name = repository_name(server, name)
    repository = server.runtime.workspaces.repository(repo_name)
    checked: list[tuple[str, str]] = []
    for upload in files:
        path = (upload.filename or "").replace("\\", "/")
        if not any(path == t or path.endswith(t) for t in config.upload_types):
            raise ApiError(
                415,
                f"{path!r} is not a type that may be uploaded ({', '.join(config.upload_types)})",
            )
        data = await upload.read(config.max_file_bytes + 1)
        if len(data) > config.max_file_bytes:
            raise ApiError(413, f"{path!r} is larger than {config.max_file_bytes} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(415, f"{path!r} is not UTF-8 text") from None
        if "\x00" in text:
            raise ApiError(415, f"{path!r} is not text (it holds NUL bytes)")
        if repository.path.exists():
            confined_path(repository.path, path)  # WorkspaceError -> 400
        else:
            _plain_relative(path)
        checked.append((path, text))
    if len({p for p, _ in checked}) != len(checked):
        raise ApiError(400, "the same path is uploaded twice")
    await repository.ensure()
    async with repository.lock:
        for path, _ in checked:  # again: the repository exists now
            confined_path(repository.path, path)
        written = repository.write_files(checked)
        commit = await repository.commit(f"forgeline: upload {len(written)} file(s)", written)
    return UploadOut(workspace=repo_name, files=written, commit=commit)


def _plain_relative(path: str) -> None:
    """What ``confined_path`` refuses without a directory to resolve in."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise WorkspaceError(f"path {path!r} is not a plain path inside the workspace")
    if any(part.rstrip(". ").casefold() in (".git", ".forgeline") for part in pure.parts):
        raise WorkspaceError(f"path {path!r} is inside a directory that is not writable")


# ------------------------------------------------------------------- a task's files


async def worktree(server: Server, task_id: str) -> tuple[TaskState, GitWorkspace]:
    state = await server.runtime.state(task_id)
    tree = server.runtime.worktree(state)
    if not tree.path.is_dir():
        raise ApiError(404, f"the worktree of task {task_id} is not on this machine")
    return state, tree


@router.get("/api/tasks/{task_id}/files", response_model=list[FileEntry], tags=["tasks"])
async def files(task_id: str, server: ServerDep, key: ReadKey) -> list[FileEntry]:
    """The files of the task's worktree (not git's or forgeline's own)."""
    _, tree = await worktree(server, task_id)
    return await asyncio.to_thread(_walk, tree.path)


def _walk(root: Path) -> list[FileEntry]:
    entries: list[FileEntry] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(names):
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            entries.append(
                FileEntry(path=path.relative_to(root).as_posix(), size=path.stat().st_size)
            )
            if len(entries) >= MAX_ENTRIES:
                return entries
    return entries


@router.get("/api/tasks/{task_id}/files/{path:path}", response_model=FileContent, tags=["tasks"])
async def file(task_id: str, path: str, server: ServerDep, key: ReadKey) -> FileContent:
    """One file of the task's worktree, as text (cut at the size limit)."""
    _, tree = await worktree(server, task_id)
    if "\x00" in path:
        raise ApiError(400, "a path must not contain a NUL character")
    target = confined_path(tree.path, path)
    if not target.is_file():
        raise ApiError(404, f"no file {path!r} in the worktree of task {task_id}")
    limit = server.config.max_file_bytes
    size = target.stat().st_size
    with target.open("rb") as handle:
        data = handle.read(limit)
    binary = b"\x00" in data[:8192]
    return FileContent(
        path=path,
        size=size,
        text="" if binary else data.decode("utf-8", errors="replace"),
        truncated=size > limit,
        binary=binary,
    )


@router.get("/api/tasks/{task_id}/diff", response_model=DiffOut, tags=["tasks"])
async def diff(task_id: str, server: ServerDep, key: ReadKey) -> DiffOut:
    """The task's change: its branch head against the commit it started from."""
    state, tree = await worktree(server, task_id)
    text = "" if state.head == state.base_commit else await tree.diff(state.base_commit, state.head)
    if len(text) > MAX_DIFF:
        text = text[:MAX_DIFF] + "\n... (cut: the diff is larger than 2 MiB)\n"
    return DiffOut(base=state.base_commit, head=state.head, diff=text)


@router.get(
    "/api/tasks/{task_id}/archive",
    tags=["tasks"],
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}, "description": "A .tar.gz"}},
)
async def archive(task_id: str, server: ServerDep, key: ReadKey) -> Response:
    """The files of the task's branch head as a ``.tar.gz`` (committed files only)."""
    state, tree = await worktree(server, task_id)
    process = await asyncio.create_subprocess_exec(
        "git", "archive", "--format=tar.gz", f"--prefix={task_id}/", state.head,
        cwd=tree.path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise ApiError(404, f"no archive of task {task_id}: {err.decode(errors='replace')}")
    return Response(
        out,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{task_id}.tar.gz"'},
    )
