"""A venv per task, made cheaply from one per repository, for the project's code.

The tester, the deployer, the patch engine and the terminal tool run the workspace's code
with a venv's interpreter, not forgeline's: the project sees only its own packages (and
pytest), and forgeline's packages and pytest plugins never load there.

**The repository's venv** (``ensure_venv``, ``<repository>/.forgeline/venv``) is made once
(under a lock, so concurrent tasks wait for one another) and reused while forgeline's
Python stays the same. It gets no packages from an index: its pytest is forgeline's own
installed pytest and pytest's runtime requirements (pluggy, iniconfig, packaging,
pygments, ...), and its pip is forgeline's pip: their installed files, as their ``RECORD``
lists them, are *copied* into the venv's ``site-packages`` with their ``.dist-info``
(``INSTALLER`` is ``forgeline``), so pip sees an ordinary installation it may upgrade or
remove. Console scripts are left out (forgeline runs ``python -m pytest``). Copies, not
links: nothing done in the venv can write through to forgeline's own files. Nothing is
ever installed into it: it is the template of the task venvs.

**A task's venv** (``task_venv``, ``<repository>/.forgeline/venvs/<task id>``) is made
from the repository's by hard links (a copy where links cannot be made): a few
milliseconds and no disk space, whatever the task later installs. Two tasks of one
repository never share one, so they may declare different versions of a package, and a
preview keeps the packages it started with while another task installs. Sharing inodes
with the template is safe because nothing writes into a file in place: pip removes a file
before it writes one (``workspace.sync`` installs and removes packages through pip), and
forgeline's own copies replace files (``_write_new``). ``workspace_venv`` picks the venv of
a path: the task's for a task worktree, the repository's otherwise.

**Running in it.** ``WorkspaceVenv.mounts()`` is what a run in the venv asks of any
spawner (``sandbox.spawner.Mounts``): its ``bin`` first on ``PATH``, ``VIRTUAL_ENV``, and
the venv bound read-only in the sandbox (writable, with the wheelhouse, for an install).
forgeline never runs anything from a venv outside the spawner. What gets installed into a
task's venv, and how, is ``workspace.sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import sys
import sysconfig
import venv as stdlib_venv
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from forgeline.errors import WorkspaceError
from forgeline.sandbox.spawner import NO_MOUNTS, Bind, Mounts, ProcessSpawner
from forgeline.workspace.git import GitWorkspace

__all__ = [
    "MARKER",
    "SEED",
    "TASK_VENVS_DIR",
    "VENV_DIR",
    "WHEELHOUSE_DIR",
    "VenvError",
    "WorkspaceVenv",
    "ensure_venv",
    "exclusive",
    "repository_root",
    "seed_distributions",
    "task_venv",
    "venv_mounts",
    "workspace_venv",
]

#: Where a repository's venv and its wheel cache live, relative to the repository.
VENV_DIR = PurePosixPath(".forgeline/venv")
TASK_VENVS_DIR = PurePosixPath(".forgeline/venvs")
WORKTREES_DIR = PurePosixPath(".forgeline/worktrees")
WHEELHOUSE_DIR = PurePosixPath(".forgeline/wheels")
#: Written last when a venv is complete; what it was made from.
MARKER = "forgeline-venv.json"
#: The distributions (with their runtime requirements) every new venv gets.
SEED: tuple[str, ...] = ("pytest",)
#: Copied too when forgeline has them: what installs into a task's venv.
TOOLS: tuple[str, ...] = ("pip",)
_locks: dict[Path, asyncio.Lock] = {}


class VenvError(WorkspaceError):
    """The workspace's venv could not be made or used, or an install was refused."""


# --------------------------------------------------------------------------- seeding


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    """The runtime requirements of ``dist`` that apply to this interpreter (no extras)."""
    env: dict[str, str] = {str(key): str(value) for key, value in default_environment().items()}
    env["extra"] = ""
    names: list[str] = []
    for text in dist.requires or ():
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(env):
            names.append(req.name)
    return names


def seed_distributions(roots: Iterable[str] = SEED) -> list[metadata.Distribution]:
    """``roots`` and everything they need at run time, as installed in forgeline's own
    environment (a ``VenvError`` names one that is missing)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise VenvError(
                f"cannot seed the workspace venv: {name} is not installed in forgeline's "
                "own environment (reinstall forgeline)"
            ) from exc
        found[name] = dist
        todo += _requirement_names(dist)
    return list(found.values())


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Copy ``dist``'s installed files into ``site`` (its ``.dist-info`` included, with a
    ``RECORD`` of what was copied); scripts outside site-packages are left. Bytecode for
    this interpreter is copied with its sources' times, so it stays valid: runs in the
    venv write no bytecode, and compiling pip's and pytest's modules at every start would
    cost each run seconds."""
    files = dist.files
    if not files:
        raise VenvError(f"cannot seed {dist.metadata['Name']}: its installed files are unknown")
    record_rel: str | None = None
    copied: list[tuple[str, str, str]] = []
    hashes = {str(f): (f.hash.mode + "=" + f.hash.value) if f.hash else "" for f in files}
    sizes = {str(f): str(f.size) if f.size is not None else "" for f in files}
    for file in files:
        rel = PurePosixPath(str(file))
        if ".." in rel.parts and _native_program(dist, file, site, rel):
            copied.append((str(rel), hashes[str(file)], sizes[str(file)]))
            continue
        if rel.is_absolute() or ".." in rel.parts:
            continue
        if rel.suffix == ".pyc" and not (
            rel.parent.name == "__pycache__" and f".{sys.implementation.cache_tag}." in rel.name
        ):
            continue
        if rel.name == "RECORD" and rel.parent.name.endswith(".dist-info"):
            record_rel = str(rel)
            continue
        source = Path(str(dist.locate_file(file)))
        if not source.is_file():
            continue
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.name == "INSTALLER" and rel.parent.name.endswith(".dist-info"):
            _write_new(target, b"forgeline\n")
            copied.append((str(rel), "", ""))
            continue
        _write_new(target, source)
        copied.append((str(rel), hashes[str(file)], sizes[str(file)]))
    if record_rel is None:
        raise VenvError(f"cannot seed {dist.metadata['Name']}: it has no RECORD")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(copied)
    writer.writerow((record_rel, "", ""))
    _write_new(site / record_rel, buffer.getvalue().encode())


def _native_program(
    dist: metadata.Distribution, file: metadata.PackagePath, site: Path, rel: PurePosixPath
) -> bool:
    """Copy ``file`` into the venv's ``bin`` if it is a native program the distribution
    installs there (ruff's binary); True if it was. Console scripts (``#!`` naming
    forgeline's interpreter) are never copied: the venv runs ``python -m``."""
    bin_dir = site.parents[2] / "bin"
    target = Path(os.path.normpath(site / rel))
    source = Path(str(dist.locate_file(file)))
    if target.parent != bin_dir or not source.is_file():
        return False
    with source.open("rb") as handle:
        if handle.read(2) == b"#!":
            return False
    bin_dir.mkdir(parents=True, exist_ok=True)
    _write_new(target, source)
    target.chmod(0o755)
    return True


def _installed_names(site: Path) -> set[str]:
    return {
        canonicalize_name(dist.metadata["Name"])
        for dist in metadata.distributions(path=[str(site)])
        if dist.metadata["Name"]
    }


def _write_new(target: Path, data: bytes | Path) -> None:
    """Put ``data`` (bytes, or a file's content) at ``target`` as a new file, never
    writing into the file there: it may be a hard link shared with other venvs."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if isinstance(data, Path):
        shutil.copy2(data, tmp)  # with its times: bytecode compiled from it stays valid
    else:
        tmp.write_bytes(data)
    os.replace(tmp, target)


# --------------------------------------------------------------------------- the venv


async def repository_root(workspace: Path) -> Path:
    """The repository a workspace (a task worktree, or the main checkout) belongs to; the
    directory itself when it is not in a git repository."""
    workspace = workspace.resolve()
    try:
        common = await GitWorkspace(workspace).git(
            "rev-parse", "--path-format=absolute", "--git-common-dir"
        )
    except WorkspaceError:
        return workspace
    path = Path(common.strip())
    return path.parent if path.name == ".git" else workspace


@dataclass(frozen=True)
class WorkspaceVenv:
    """A venv (``path``) and its repository's wheel cache (``wheelhouse``)."""

    path: Path
    wheelhouse: Path

    @classmethod
    def of(cls, repository: Path) -> WorkspaceVenv:
        """The repository's venv (the template of its task venvs)."""
        root = repository.resolve()
        return cls(root / VENV_DIR, root / WHEELHOUSE_DIR)

    @classmethod
    def for_task(cls, repository: Path, task_id: str) -> WorkspaceVenv:
        """Task ``task_id``'s venv in ``repository``."""
        if not task_id or "/" in task_id or task_id in (".", ".."):
            raise VenvError(f"{task_id!r} cannot name a task's venv")
        root = repository.resolve()
        return cls(root / TASK_VENVS_DIR / task_id, root / WHEELHOUSE_DIR)

    @property
    def python(self) -> Path:
        """The venv's interpreter (run it only through a spawner)."""
        return self.path / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        base = str(self.path)
        return Path(
            sysconfig.get_path("purelib", scheme="venv", vars={"base": base, "platbase": base})
        )

    @property
    def ready(self) -> bool:
        """Whether a complete venv made from this forgeline's Python is there."""
        try:
            marker = json.loads((self.path / MARKER).read_text())
        except (OSError, ValueError):
            return False
        return (
            isinstance(marker, dict)
            and marker.get("python") == _python_identity()
            and self.python.exists()
        )

    def mounts(self, *, writable: bool = False) -> Mounts:
        """What a run in the venv asks of a spawner: the venv first on ``PATH``, read-only
        to a sandbox unless ``writable`` (an install, which also reads the wheelhouse)."""
        if not writable:
            return Mounts(venv=self.path)
        self.wheelhouse.mkdir(parents=True, exist_ok=True)
        return Mounts(venv=self.path, venv_writable=True, binds=(Bind(self.wheelhouse),))

    async def seed(self, roots: Sequence[str]) -> tuple[str, ...]:
        """Copy forgeline's own installed ``roots`` (with their requirements) into the
        venv where it has none of them yet, as a new venv gets pytest: no network, and an
        ordinary installation pip may upgrade or remove. A native program a distribution
        installs (ruff's binary) goes into the venv's ``bin``. Returns the names copied;
        a ``VenvError`` names a root forgeline's environment does not have."""
        dists = seed_distributions(roots)
        async with exclusive(self.path):
            present = _installed_names(self.site_packages)
            missing = [d for d in dists if canonicalize_name(d.metadata["Name"]) not in present]
            for dist in missing:
                await asyncio.to_thread(_copy_distribution, dist, self.site_packages)
        return tuple(dist.metadata["Name"] for dist in missing)

    def relative_to(self, repository: Path) -> str:
        """The venv's path relative to ``repository`` (for events), or its full path."""
        try:
            return self.path.relative_to(repository.resolve()).as_posix()
        except ValueError:
            return str(self.path)

    # ------------------------------------------------------------------ installing

    async def ensure_pip(self, spawner: ProcessSpawner, *, cwd: Path) -> None:
        """Give the venv pip when it has none (a forgeline without pip made it): with
        ``ensurepip``, in the sandbox. The caller holds ``exclusive(venv.path)``."""
        if (self.site_packages / "pip").is_dir():
            return
        result = await spawner.run(
            [str(self.python), "-m", "ensurepip", "--default-pip"],
            cwd=cwd,
            mounts=self.mounts(writable=True),
            timeout=300,
        )
        if not result.ok:
            raise VenvError(f"could not give the workspace venv pip: {result.output[-2000:]}")


def venv_mounts(venv: WorkspaceVenv | None) -> Mounts:
    """What a run with ``venv`` (read-only) asks of a spawner; nothing without a venv."""
    return venv.mounts() if venv is not None else NO_MOUNTS


def _python_identity() -> dict[str, str]:
    base = getattr(sys, "_base_executable", sys.executable)
    return {"version": sys.version, "executable": str(Path(base).resolve())}


def _lock(path: Path) -> asyncio.Lock:
    return _locks.setdefault(path, asyncio.Lock())


@contextlib.asynccontextmanager
async def exclusive(path: Path) -> AsyncIterator[None]:
    """The venv (or wheelhouse) at ``path`` to ourselves: a lock in this process, then an
    ``flock`` on ``<path>.lock`` against other forgeline processes (made, seeded, installed
    into or downloaded into by one at a time)."""
    async with _lock(path):
        lock_file = path.with_name(path.name + ".lock")
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with lock_file.open("a") as handle:
            await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _create(target: WorkspaceVenv, seed: Sequence[str]) -> None:
    """Make the venv (blocking; the caller holds ``exclusive``)."""
    dists = seed_distributions(seed)
    for tool in TOOLS:
        with contextlib.suppress(VenvError):  # without it: ensurepip when needed
            dists += seed_distributions([tool])
    if target.path.is_symlink() or (target.path.exists() and not target.path.is_dir()):
        target.path.unlink()
    elif target.path.exists():
        shutil.rmtree(target.path)
    stdlib_venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(target.path)
    site = target.site_packages
    for dist in dists:
        _copy_distribution(dist, site)
    marker = {
        "python": _python_identity(),
        "seeded": {dist.metadata["Name"]: dist.version for dist in dists},
    }
    tmp = target.path / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, target.path / MARKER)


async def ensure_venv(repository: Path, *, seed: Sequence[str] = SEED) -> WorkspaceVenv:
    """The repository's venv, made now if it is missing, incomplete or from another
    Python; otherwise the existing one, untouched."""
    target = WorkspaceVenv.of(repository)
    if target.ready:
        return target
    async with exclusive(target.path):
        if not target.ready:  # nobody made it while we waited
            try:
                await asyncio.to_thread(_create, target, tuple(seed))
            except OSError as exc:
                raise VenvError(
                    f"could not create the workspace venv {target.path}: {exc}"
                ) from exc
    return target


def _clone(template: WorkspaceVenv, target: WorkspaceVenv) -> None:
    """Make ``target`` from ``template`` by hard links (blocking; the caller holds both
    venvs' locks)."""

    def link(source: str, dest: str) -> None:
        try:
            os.link(source, dest)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(source, dest)

    if target.path.is_symlink() or (target.path.exists() and not target.path.is_dir()):
        target.path.unlink()
    elif target.path.exists():
        shutil.rmtree(target.path)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.path.with_name(f".{target.path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(template.path, tmp, symlinks=True, copy_function=link)
    os.replace(tmp, target.path)


async def task_venv(repository: Path, task_id: str, *, seed: Sequence[str] = SEED) -> WorkspaceVenv:
    """Task ``task_id``'s venv, made now from the repository's venv if it is missing,
    incomplete or from another Python; otherwise the existing one, untouched."""
    target = WorkspaceVenv.for_task(repository, task_id)
    if target.ready:
        return target
    template = await ensure_venv(repository, seed=seed)
    async with exclusive(target.path), exclusive(template.path):
        if not target.ready:
            try:
                await asyncio.to_thread(_clone, template, target)
            except OSError as exc:
                raise VenvError(f"could not create the task's venv {target.path}: {exc}") from exc
    return target


async def workspace_venv(workspace: Path, *, seed: Sequence[str] = SEED) -> WorkspaceVenv:
    """The venv to run ``workspace``'s code with: for a task worktree
    (``<repository>/.forgeline/worktrees/<task id>``) the task's venv, for anything else
    the venv of the repository it belongs to (see ``ensure_venv``)."""
    repository = await repository_root(workspace)
    path = workspace.resolve()
    if path.parent == repository / WORKTREES_DIR:
        return await task_venv(repository, path.name, seed=seed)
    return await ensure_venv(repository, seed=seed)
