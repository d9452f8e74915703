"""One virtual environment per repository, for the workspace's tests, programs and installs.

The tester, the deployer and the terminal tool run the workspace's code with the venv's
interpreter, not forgeline's: the project sees only its own packages (and pytest), and
forgeline's packages and pytest plugins never load there. The venv lives in
``<repository>/.forgeline/venv``; every task worktree of that repository shares it. It is
created once (under a lock, so concurrent tasks wait for one another) and reused while
forgeline's Python stays the same.

**pytest without the network.** A new venv gets no packages from an index. Its pytest is
forgeline's own installed pytest and pytest's runtime requirements (pluggy, iniconfig,
packaging, pygments, ...): their installed files, as their ``RECORD`` lists them, are
*copied* into the venv's ``site-packages`` with their ``.dist-info`` (``INSTALLER`` is
``forgeline``), so pip sees an ordinary installation it may upgrade or remove. Console
scripts are left out (forgeline runs ``python -m pytest``). Copies, not links: an install
in the venv can never write through to forgeline's own files. pip is seeded the same way
(or with ``ensurepip``) the first time something is installed.

**Installs.** ``install`` takes requirement specifiers only (``name[extra]>=1.0``; no
URLs, paths, editable installs or pip options beyond a few harmless ones) and wheels only
(``--only-binary=:all:``), so installing never runs code from a package. The network is
used only by forgeline's *own* pip on the host, to ``pip download`` the wheels into
``<repository>/.forgeline/wheels``; that pip is never the venv's (an install may have
replaced the venv's files) and gets the validated specifiers and nothing else from the
agent. The install itself is ``pip install --no-index --find-links <wheelhouse>`` run by
the spawner: in the sandbox, with no network, the venv the only writable place besides
the workspace. With ``download=False`` only what the wheelhouse already holds can be
installed. forgeline never runs anything from the venv outside the spawner.

**Running in it.** ``WorkspaceVenv.mounts()`` is what a run in the venv asks of any
spawner (``sandbox.spawner.Mounts``): its ``bin`` first on ``PATH``, ``VIRTUAL_ENV``, and
the venv bound read-only in the sandbox (writable, with the wheelhouse, for an install).
The workspace uses the sandbox, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import io
import json
import os
import re
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
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import NO_MOUNTS, Bind, Mounts, ProcessResult, ProcessSpawner
from forgeline.workspace.git import GitWorkspace, confined_path

__all__ = [
    "DOWNLOAD_ENV",
    "MARKER",
    "SEED",
    "VENV_DIR",
    "WHEELHOUSE_DIR",
    "InstallRequest",
    "VenvError",
    "WorkspaceVenv",
    "ensure_venv",
    "parse_install_args",
    "repository_root",
    "seed_distributions",
    "venv_mounts",
    "workspace_venv",
]

#: Where a repository's venv and its wheel cache live, relative to the repository.
VENV_DIR = PurePosixPath(".forgeline/venv")
WHEELHOUSE_DIR = PurePosixPath(".forgeline/wheels")
#: Written last when a venv is complete; what it was made from.
MARKER = "forgeline-venv.json"
#: The distributions (with their runtime requirements) every new venv gets.
SEED: tuple[str, ...] = ("pytest",)
#: Variables forgeline's own downloading pip gets from forgeline's environment (proxies,
#: index configuration, certificates). They never reach the sandbox.
DOWNLOAD_ENV: tuple[str, ...] = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_CONFIG_FILE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)
#: pip options an agent may give to ``pip install`` (none reaches the network or builds).
_INSTALL_FLAGS = {"-U": "--upgrade", "--upgrade": "--upgrade", "--pre": "--pre"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

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
    ``RECORD`` of what was copied); scripts outside site-packages and bytecode are left."""
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
        if rel.is_absolute() or ".." in rel.parts or "__pycache__" in rel.parts:
            continue
        if rel.suffix == ".pyc":
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
            target.write_text("forgeline\n")
            copied.append((str(rel), "", ""))
            continue
        shutil.copyfile(source, target)
        copied.append((str(rel), hashes[str(file)], sizes[str(file)]))
    if record_rel is None:
        raise VenvError(f"cannot seed {dist.metadata['Name']}: it has no RECORD")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(copied)
    writer.writerow((record_rel, "", ""))
    (site / record_rel).write_text(buffer.getvalue())


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
    shutil.copyfile(source, target)
    target.chmod(0o755)
    return True


def _installed_names(site: Path) -> set[str]:
    return {
        canonicalize_name(dist.metadata["Name"])
        for dist in metadata.distributions(path=[str(site)])
        if dist.metadata["Name"]
    }


# --------------------------------------------------------------------------- installs


@dataclass(frozen=True)
class InstallRequest:
    """A checked ``pip install``: requirement specifiers and the harmless flags given."""

    requirements: tuple[str, ...]
    flags: tuple[str, ...] = ()


def _requirement(text: str, where: str) -> str:
    text = text.strip()
    if text.startswith("-"):
        raise VenvError(
            f"pip install option {text.split('=')[0]!r} ({where}) is not allowed: only "
            f"{', '.join(sorted(_INSTALL_FLAGS))} and -r FILE are"
        )
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise VenvError(
            f"{text!r} ({where}) is not a requirement specifier like name[extra]>=1.0: "
            "local paths, URLs and archives cannot be installed (they would build code)"
        ) from exc
    if req.url:
        raise VenvError(
            f"{text!r} ({where}) is a direct reference (name @ URL): only packages from the "
            "index can be installed"
        )
    if not _NAME.match(req.name):
        raise VenvError(f"{text!r} ({where}) does not name a package")
    return str(req)


def parse_install_args(args: Sequence[str], workspace: Path) -> InstallRequest:
    """Check the arguments after ``pip install``: requirement specifiers, ``-U``/
    ``--upgrade``, ``--pre`` and ``-r FILE`` (a file in ``workspace`` whose lines are
    specifiers). Anything else is a ``VenvError`` saying why."""
    requirements: list[str] = []
    flags: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        i += 1
        if arg in _INSTALL_FLAGS:
            if _INSTALL_FLAGS[arg] not in flags:
                flags.append(_INSTALL_FLAGS[arg])
            continue
        if arg in ("-r", "--requirement") or arg.startswith(("-r", "--requirement=")):
            if arg in ("-r", "--requirement"):
                if i >= len(items):
                    raise VenvError(f"pip install {arg} needs a file")
                name = items[i]
                i += 1
            else:
                name = arg.removeprefix("--requirement=").removeprefix("-r")
            try:
                path = confined_path(workspace, name)
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except (OSError, WorkspaceError) as exc:
                raise VenvError(f"cannot read requirements file {name!r}: {exc}") from exc
            for number, line in enumerate(lines, 1):
                line = line.split(" #", 1)[0].strip()
                if line and not line.startswith("#"):
                    requirements.append(_requirement(line, f"{name} line {number}"))
            continue
        requirements.append(_requirement(arg, "argument"))
    if not requirements:
        raise VenvError("pip install needs at least one requirement")
    return InstallRequest(tuple(requirements), tuple(flags))


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
    """A repository's venv (``path``) and wheel cache (``wheelhouse``)."""

    path: Path
    wheelhouse: Path

    @classmethod
    def of(cls, repository: Path) -> WorkspaceVenv:
        root = repository.resolve()
        return cls(root / VENV_DIR, root / WHEELHOUSE_DIR)

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
        async with _exclusive(self.path):
            present = _installed_names(self.site_packages)
            missing = [d for d in dists if canonicalize_name(d.metadata["Name"]) not in present]
            for dist in missing:
                await asyncio.to_thread(_copy_distribution, dist, self.site_packages)
        return tuple(dist.metadata["Name"] for dist in missing)

    # ------------------------------------------------------------------ installing

    async def ensure_pip(self, spawner: ProcessSpawner, *, cwd: Path) -> None:
        """Give the venv pip (once): forgeline's own copy, or else ``ensurepip``."""
        async with _exclusive(self.path):
            if (self.site_packages / "pip").is_dir():
                return
            try:
                [dist] = seed_distributions(["pip"])
            except VenvError:
                dist = None
            if dist is not None:
                await asyncio.to_thread(_copy_distribution, dist, self.site_packages)
                return
            result = await spawner.run(
                [str(self.python), "-m", "ensurepip", "--default-pip"],
                cwd=cwd,
                mounts=self.mounts(writable=True),
                timeout=300,
            )
            if not result.ok:
                raise VenvError(f"could not give the workspace venv pip: {result.output[-2000:]}")

    async def download(
        self,
        request: InstallRequest,
        *,
        cwd: Path,
        index_url: str | None = None,
        use_index: bool = True,
        find_links: Sequence[str] = (),
        timeout: float = 300,
    ) -> ProcessResult:
        """``pip download`` the wheels ``request`` needs into the wheelhouse, with
        forgeline's own pip on the host (the only step that uses the network)."""
        try:
            metadata.distribution("pip")
        except metadata.PackageNotFoundError as exc:
            raise VenvError(
                "cannot download packages: forgeline's own environment has no pip "
                '(install it there, or set [terminal] installs = "wheelhouse")'
            ) from exc
        self.wheelhouse.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "--dest",
            str(self.wheelhouse),
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            *(["--pre"] if "--pre" in request.flags else []),
        ]
        if not use_index:
            argv.append("--no-index")
        elif index_url:
            argv += ["--index-url", index_url]
        for link in find_links:
            argv += ["--find-links", link]
        argv += ["--", *request.requirements]
        env = {name: os.environ[name] for name in DOWNLOAD_ENV if name in os.environ}
        return await LocalSpawner().run(argv, cwd=cwd, env=env, timeout=timeout)

    def install_argv(self, request: InstallRequest) -> list[str]:
        """The sandboxed, offline ``pip install`` of ``request`` from the wheelhouse."""
        return [
            str(self.python),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(self.wheelhouse),
            "--only-binary=:all:",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            *request.flags,
            "--",
            *request.requirements,
        ]

    async def install(
        self,
        request: InstallRequest,
        spawner: ProcessSpawner,
        *,
        cwd: Path,
        download: bool = True,
        index_url: str | None = None,
        use_index: bool = True,
        find_links: Sequence[str] = (),
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> tuple[ProcessResult | None, ProcessResult]:
        """Download (when ``download``) then install ``request`` into the venv; the
        download's result (None when there was none or it failed) and the install's. A
        failed download stops before the install: the second result is the download's."""
        await self.ensure_pip(spawner, cwd=cwd)
        fetched: ProcessResult | None = None
        if download:
            fetched = await self.download(
                request,
                cwd=cwd,
                index_url=index_url,
                use_index=use_index,
                find_links=find_links,
                timeout=timeout,
            )
            if not fetched.ok:
                return None, fetched
        async with _exclusive(self.path):
            installed = await spawner.run(
                self.install_argv(request),
                cwd=cwd,
                mounts=self.mounts(writable=True),
                timeout=timeout,
                max_output=max_output,
            )
        return fetched, installed


def venv_mounts(venv: WorkspaceVenv | None) -> Mounts:
    """What a run with ``venv`` (read-only) asks of a spawner; nothing without a venv."""
    return venv.mounts() if venv is not None else NO_MOUNTS


def _python_identity() -> dict[str, str]:
    base = getattr(sys, "_base_executable", sys.executable)
    return {"version": sys.version, "executable": str(Path(base).resolve())}


def _lock(path: Path) -> asyncio.Lock:
    return _locks.setdefault(path, asyncio.Lock())


@contextlib.asynccontextmanager
async def _exclusive(path: Path) -> AsyncIterator[None]:
    """The venv at ``path`` to ourselves: a lock in this process, then an ``flock`` on
    ``<path>.lock`` against other forgeline processes (made, seeded or installed into by
    one at a time)."""
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
    """Make the venv (blocking; the caller holds ``_exclusive``)."""
    dists = seed_distributions(seed)
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
    async with _exclusive(target.path):
        if not target.ready:  # nobody made it while we waited
            try:
                await asyncio.to_thread(_create, target, tuple(seed))
            except OSError as exc:
                raise VenvError(
                    f"could not create the workspace venv {target.path}: {exc}"
                ) from exc
    return target


async def workspace_venv(workspace: Path, *, seed: Sequence[str] = SEED) -> WorkspaceVenv:
    """The venv of the repository ``workspace`` belongs to (see ``ensure_venv``)."""
    return await ensure_venv(await repository_root(workspace), seed=seed)
