"""Bring a task's venv to exactly the packages its project declares: the checked path.

``PackageSync.sync(venv, declaration)`` runs before the tester, the deployer and the patch
engine's test collection (and for a terminal ``pip install``, with the requested packages
added for the time being). In order:

1. **Policy by name** (``workspace.packages``): a declared package outside the policy is a
   ``PackageRefused`` naming it and the rule. Nothing is fetched.
2. **Unchanged?** The venv records what its last sync was asked for and left
   (``forgeline-packages.json``); the same declaration and the same installed
   distributions mean nothing to do.
3. **Download** (not ``offline``): forgeline's *own* pip on the host, ``pip download
   --only-binary=:all: --dest <repository>/.forgeline/wheels``: the only step with network.
   It runs no package code (wheels only) and gets the validated specifiers and nothing
   else from the project. pip's reason for a package that does not exist, or has no wheel
   for this Python, is the ``PackageError``'s message.
4. **Resolve**, offline, with the same pip: ``pip install --dry-run --ignore-installed
   --no-index --find-links <wheelhouse> --report``. The report names every wheel the
   declared packages bring in, with its version and sha256; pytest's requirements that
   the project does not declare are pinned to the versions in the venv (a constraints
   file), so a package cannot break the test runner behind the project's back.
5. **Policy on the set**: ``deny`` for every wheel, the caps on count and total size.
6. **Install** in the spawner (the sandbox, no network, the venv the only writable place
   besides the workspace): ``pip uninstall`` what is no longer wanted, then ``pip install
   --no-index --no-deps --require-hashes -r <lock>``, the lock naming each wheel file with
   the hash that was checked. A pytest requirement a package had replaced is put back.

The outcome is a ``PackagesSynced`` (names, versions, hashes, what was installed and
removed) for the stage to record, or None when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from forgeline.config import PackagesConfig
from forgeline.core.events import PackagePin, PackagesSynced
from forgeline.runs.usage import run_usage
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import ProcessResult, ProcessSpawner, SpawnError, tail_text
from forgeline.workspace.declared import Declaration, PackageError
from forgeline.workspace.packages import PackagePolicy
from forgeline.workspace.venv import (
    MARKER,
    WorkspaceVenv,
    _copy_distribution,
    exclusive,
    seed_distributions,
)

__all__ = [
    "DOWNLOAD_ENV",
    "SYNC_MARKER",
    "PackageSync",
    "installed_distributions",
    "synced_packages",
]

#: What a venv's last sync was asked for and left, in the venv.
SYNC_MARKER = "forgeline-packages.json"
#: Bumped when a sync's meaning changes: every venv is synced again once.
_FORMAT = 1
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
#: pip's options for every run: quiet about itself, never asking.
_PIP_QUIET = ("--disable-pip-version-check", "--no-input")
_NO_PROGRESS = ("--progress-bar", "off")
#: Runs that need no pip configuration read none (the download reads the user's).
_NO_CONFIG = {"PIP_CONFIG_FILE": os.devnull}


def installed_distributions(site: Path) -> dict[str, str]:
    """The distributions installed in ``site`` (normalized name -> version), read from
    their metadata files; nothing is imported."""
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    return found


def _pip_reason(result: ProcessResult, limit: int = 3_000) -> str:
    """What pip said went wrong: its ``ERROR:`` lines, with the conflict it explains (on
    its standard output), else the tail of its output."""
    if result.timed_out:
        return "pip timed out"
    errors = [line for line in result.output.splitlines() if line.startswith("ERROR:")]
    if not errors:
        return tail_text(result.output.strip(), limit)
    conflict: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("The conflict is caused by") or (conflict and line.strip()):
            conflict.append(line)
        elif conflict:
            break
    return tail_text("\n".join(errors[:1] + conflict + errors[1:]), limit)


@dataclass(frozen=True)
class _State:
    key: str
    expected: dict[str, str]
    packages: tuple[PackagePin, ...]


def _read_state(venv: WorkspaceVenv) -> _State | None:
    try:
        data = json.loads((venv.path / SYNC_MARKER).read_text())
        pins = tuple(PackagePin.model_validate(p) for p in data["packages"])
        return _State(str(data["key"]), dict(data["expected"]), pins)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def synced_packages(venv: WorkspaceVenv) -> tuple[PackagePin, ...]:
    """The wheels the venv's last sync left in it (none before the first)."""
    state = _read_state(venv)
    return state.packages if state is not None else ()


def _write_state(venv: WorkspaceVenv, state: _State) -> None:
    data = {
        "key": state.key,
        "expected": state.expected,
        "packages": [p.model_dump() for p in state.packages],
    }
    tmp = venv.path / f".{SYNC_MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, venv.path / SYNC_MARKER)


def _seeds(venv: WorkspaceVenv) -> dict[str, str]:
    """What the venv was made with (normalized name -> version)."""
    try:
        seeded = json.loads((venv.path / MARKER).read_text()).get("seeded", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {canonicalize_name(str(k)): str(v) for k, v in dict(seeded).items()}


class PackageSync:
    """Syncs task venvs to declared packages under ``config`` (``[packages]``), installing
    through ``spawner``. See the module's docstring for the steps."""

    def __init__(self, config: PackagesConfig, spawner: ProcessSpawner) -> None:
        self.config = config
        self.spawner = spawner
        self.policy = PackagePolicy(config)
        self.last_run: ProcessResult | None = None
        """The last install this object ran in the spawner (for its resource usage)."""

    def _key(self, wanted: Sequence[str], pre: bool) -> str:
        config = self.config
        fingerprint = {
            "format": _FORMAT,
            "wanted": sorted(wanted),
            "pre": pre,
            "allow": sorted(config.allow_entries),
            "deny": sorted(config.deny_entries),
            "caps": [config.max_wheels, config.max_total_mb],
        }
        return hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()

    async def sync(
        self,
        venv: WorkspaceVenv,
        declaration: Declaration,
        *,
        cwd: Path,
        requested: Sequence[str] = (),
        pre: bool = False,
    ) -> PackagesSynced | None:
        """Make ``venv`` hold exactly ``declaration``'s packages (and ``requested``, a
        terminal install's); the record of what changed, or None when nothing did."""
        wanted = tuple(dict.fromkeys((*declaration.requirements, *requested)))
        names = tuple(dict.fromkeys(canonicalize_name(Requirement(r).name) for r in wanted))
        self.policy.check_declared(names)
        key = self._key(wanted, pre)
        async with exclusive(venv.path):
            state = _read_state(venv)
            installed = installed_distributions(venv.site_packages)
            if state is not None and state.key == key and installed == state.expected:
                return None
            seeds = _seeds(venv)
            pins: tuple[PackagePin, ...] = ()
            downloaded = False
            if wanted:
                constraints = {n: v for n, v in seeds.items() if n not in names}
                async with exclusive(venv.wheelhouse):
                    if not self.config.offline:
                        await self._download(venv, wanted, constraints, cwd=cwd, pre=pre)
                        downloaded = True
                    pins = await self._resolve(venv, wanted, constraints, cwd=cwd, pre=pre)
                self.policy.check_resolved(pins, names)
            desired = {**seeds, **{p.name: p.version for p in pins}}
            wanted_pins = {p.name for p in pins}
            remove = sorted(n for n in installed if n not in desired)
            restore = sorted(
                n for n, v in seeds.items() if n not in wanted_pins and installed.get(n) != v
            )
            install = [p for p in pins if installed.get(p.name) != p.version]
            result: ProcessResult | None = None
            gone = [n for n in (*remove, *restore) if n in installed]
            if gone:
                await self._pip(venv, ["uninstall", "-y", "--", *gone], cwd=cwd)
            if restore:
                await self._restore(venv, restore)
            if install:
                result = self.last_run = await self._install(venv, install, cwd=cwd)
            _write_state(venv, _State(key, desired, pins))
        if not (install or remove or restore):
            return None
        return PackagesSynced(
            declared=declaration.requirements,
            requested=tuple(r for r in requested if r not in declaration.requirements),
            sources=declaration.sources,
            packages=pins,
            installed=tuple(p.name for p in install) + tuple(restore),
            removed=tuple(n for n in remove if n not in wanted_pins),
            downloaded=downloaded,
            venv=venv.relative_to(venv.wheelhouse.parent.parent),
            usage=run_usage(result.usage) if result is not None else None,
        )

    # ------------------------------------------------------------------ the steps

    def _pip_sources(self, *, offline: bool, wheelhouse: Path) -> list[str]:
        if offline:
            return ["--no-index", "--find-links", str(wheelhouse)]
        config = self.config
        argv: list[str] = []
        if not config.use_index:
            argv.append("--no-index")
        elif config.index_url:
            argv += ["--index-url", config.index_url]
        for link in config.find_links:
            argv += ["--find-links", link]
        return argv

    async def _host_pip(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], what: str
    ) -> ProcessResult:
        """forgeline's own pip, on the host (it never runs the venv's code)."""
        try:
            metadata.distribution("pip")
        except metadata.PackageNotFoundError as exc:
            raise PackageError(
                f"cannot {what}: forgeline's own environment has no pip (install it there)"
            ) from exc
        full = [sys.executable, "-m", "pip", *argv]
        return await LocalSpawner().run(full, cwd=cwd, env=env, timeout=self.config.timeout)

    async def _download(
        self,
        venv: WorkspaceVenv,
        wanted: Sequence[str],
        constraints: dict[str, str],
        *,
        cwd: Path,
        pre: bool,
    ) -> None:
        venv.wheelhouse.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="forgeline-download-") as tmp:
            argv = [
                "download",
                "--only-binary=:all:",
                "--dest",
                str(venv.wheelhouse),
                *_PIP_QUIET,
                *_NO_PROGRESS,
                *(["--pre"] if pre else []),
                *self._pip_sources(offline=False, wheelhouse=venv.wheelhouse),
                *_constraints(Path(tmp), constraints),
                "--",
                *wanted,
            ]
            env = {name: os.environ[name] for name in DOWNLOAD_ENV if name in os.environ}
            result = await self._host_pip(argv, cwd=cwd, env=env, what="download packages")
        if not result.ok:
            raise PackageError(
                f"pip could not download {', '.join(wanted)}:\n{_pip_reason(result)}"
            )

    async def _resolve(
        self,
        venv: WorkspaceVenv,
        wanted: Sequence[str],
        constraints: dict[str, str],
        *,
        cwd: Path,
        pre: bool,
    ) -> tuple[PackagePin, ...]:
        venv.wheelhouse.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="forgeline-resolve-") as tmp:
            report = Path(tmp) / "report.json"
            argv = [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--only-binary=:all:",
                "--quiet",
                "--report",
                str(report),
                *_PIP_QUIET,
                *(["--pre"] if pre else []),
                *self._pip_sources(offline=True, wheelhouse=venv.wheelhouse),
                *_constraints(Path(tmp), constraints),
                "--",
                *wanted,
            ]
            result = await self._host_pip(argv, cwd=cwd, env=_NO_CONFIG, what="resolve packages")
            if not result.ok:
                where = " (offline: only the wheelhouse)" if self.config.offline else ""
                raise PackageError(
                    f"pip could not resolve {', '.join(wanted)}{where}:\n{_pip_reason(result)}"
                )
            try:
                data = json.loads(report.read_text())
            except (OSError, ValueError) as exc:
                raise PackageError(f"pip's resolution report could not be read: {exc}") from exc
        return tuple(_pin(item, venv.wheelhouse) for item in data.get("install", []))

    async def _pip(self, venv: WorkspaceVenv, args: list[str], *, cwd: Path) -> ProcessResult:
        """The venv's pip, in the spawner, the venv writable and offline."""
        await venv.ensure_pip(self.spawner, cwd=cwd)
        argv = [str(venv.python), "-m", "pip", args[0], *_PIP_QUIET, *args[1:]]
        try:
            result = await self.spawner.run(
                argv,
                cwd=cwd,
                env=_NO_CONFIG,
                mounts=venv.mounts(writable=True),
                timeout=self.config.timeout,
            )
        except SpawnError as exc:
            raise PackageError(f"pip {args[0]} could not start: {exc}") from exc
        if not result.ok:
            raise PackageError(f"pip {args[0]} failed in the venv:\n{_pip_reason(result)}")
        return result

    async def _install(
        self, venv: WorkspaceVenv, pins: Sequence[PackagePin], *, cwd: Path
    ) -> ProcessResult:
        # The lock lives in a forgeline-* scratch directory, which the sandbox binds.
        with tempfile.TemporaryDirectory(prefix="forgeline-lock-") as tmp:
            lock = Path(tmp) / "lock.txt"
            lock.write_text(
                "".join(f"{venv.wheelhouse / p.file} --hash=sha256:{p.sha256}\n" for p in pins)
            )
            args = ["install", *_NO_PROGRESS, "--no-index", "--no-deps", "--only-binary=:all:"]
            args += ["--require-hashes", "--no-cache-dir", "-r", str(lock)]
            return await self._pip(venv, args, cwd=cwd)

    async def _restore(self, venv: WorkspaceVenv, names: Sequence[str]) -> None:
        """Copy forgeline's own copies of ``names`` (pytest's requirements) back."""
        for dist in seed_distributions([*names]):
            if canonicalize_name(dist.metadata["Name"]) in names:
                _copy_distribution(dist, venv.site_packages)


def _constraints(directory: Path, pins: dict[str, str]) -> list[str]:
    if not pins:
        return []
    path = directory / "constraints.txt"
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return ["--constraint", str(path)]


def _pin(item: Any, wheelhouse: Path) -> PackagePin:
    """One entry of pip's installation report as a pin, its wheel in ``wheelhouse``."""
    try:
        url = str(item["download_info"]["url"])
        sha256 = str(item["download_info"]["archive_info"]["hashes"]["sha256"])
        name = canonicalize_name(str(item["metadata"]["name"]))
        version = str(item["metadata"]["version"])
    except (KeyError, TypeError) as exc:
        raise PackageError(f"pip's resolution report has an entry without a hash: {item}") from exc
    path = Path(unquote(urlsplit(url).path))
    if path.parent.resolve() != wheelhouse.resolve() or path.suffix != ".whl":
        raise PackageError(f"pip resolved {name} to {url}, which is not a wheel of the wheelhouse")
    size = path.stat().st_size
    return PackagePin(name=name, version=version, sha256=sha256, size=size, file=path.name)
