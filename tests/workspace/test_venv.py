"""The repository's venv: made once and reused, pytest in it without a network, the tests
and programs run with its interpreter, installs through the spawner (real venvs, real
processes; the ``sandbox`` tests fail, never skip, without bubblewrap). Nothing here
reaches the network: wheels are built locally."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from forgeline.config import TerminalConfig
from forgeline.core.events import RunSpec
from forgeline.runs.preview import smoke
from forgeline.runs.testrun import run_pytest
from forgeline.sandbox.bwrap import BwrapSandbox, sandbox_available
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import NO_MOUNTS, Bind, Mounts, ProcessResult
from forgeline.tools.terminal import INSTALL_RULE, Terminal
from forgeline.workspace import venv as venv_module
from forgeline.workspace.venv import (
    MARKER,
    VenvError,
    WorkspaceVenv,
    ensure_venv,
    parse_install_args,
    workspace_venv,
)

# A test module that says which interpreter and plugins it runs with.
WHERE_TESTS = """
import sys


def test_the_interpreter_is_the_venvs():
    assert sys.prefix == {prefix!r}


def test_forgelines_plugins_are_not_loaded(pytestconfig):
    assert not pytestconfig.pluginmanager.has_plugin("asyncio")
    assert not pytestconfig.pluginmanager.has_plugin("timeout")
"""

# What the venv's interpreter can import: pytest (its own copy), nothing of forgeline's.
IMPORTS = """
import importlib.util, json, sys
import pytest
print(json.dumps({
    "prefix": sys.prefix,
    "pytest": pytest.__file__,
    "missing": [m for m in ("forgeline", "pydantic", "pytest_asyncio", "pytest_timeout")
                if importlib.util.find_spec(m) is None],
}))
"""


def make_wheel(
    dest: Path, name: str, version: str, code: str, requires: Sequence[str] = ()
) -> Path:
    """A pure-Python wheel built by hand (no build backend, no network)."""
    meta = f"{name}-{version}.dist-info"
    metadata_text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata_text += "".join(f"Requires-Dist: {req}\n" for req in requires)
    files = {
        f"{name}/__init__.py": code,
        f"{meta}/METADATA": metadata_text,
        f"{meta}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: forgeline-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{meta}/RECORD"] = "\n".join([*record, f"{meta}/RECORD,,"]) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


class RecordingLocal(LocalSpawner):
    """A LocalSpawner that remembers every argv it ran."""

    def __init__(self) -> None:
        super().__init__(kill_grace=1.0)
        self.calls: list[tuple[str, ...]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        self.calls.append(tuple(argv))
        return await super().run(
            argv, cwd=cwd, env=env, mounts=mounts, timeout=timeout, max_output=max_output
        )


class RecordingSandbox(BwrapSandbox):
    """A BwrapSandbox that remembers every argv it ran, and its mounts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[str, ...], tuple[Bind, ...]]] = []
        """Each run's argv and the binds its mounts ask for."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        mounts: Mounts = NO_MOUNTS,
        timeout: float = 300,
        max_output: int = 200_000,
    ) -> ProcessResult:
        self.calls.append((tuple(argv), mounts.all_binds()))
        return await super().run(
            argv, cwd=cwd, env=env, mounts=mounts, timeout=timeout, max_output=max_output
        )


@pytest.fixture
def sandbox() -> RecordingSandbox:
    reason = sandbox_available()
    if reason is not None:
        pytest.fail(
            f"the bubblewrap sandbox is not usable on this machine: {reason}", pytrace=False
        )
    return RecordingSandbox()


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    identity = ("-c", "user.name=t", "-c", "user.email=t@t")
    git(*identity, "commit", "-q", "--allow-empty", "-m", "init", cwd=path)
    return path


def add_worktree(repo: Path, name: str) -> Path:
    path = repo / ".forgeline" / "worktrees" / name
    git("worktree", "add", "-q", "-b", f"forgeline/{name}", str(path), cwd=repo)
    return path


@pytest.fixture
def worktree(repo: Path) -> Path:
    return add_worktree(repo, "t1")


# --------------------------------------------------------------------------- once


async def test_the_venv_is_made_once_per_repository_and_reused(
    repo: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    real_create = venv_module._create

    def counting(target: WorkspaceVenv, seed: Sequence[str]) -> None:
        made.append(target.path)
        real_create(target, seed)

    monkeypatch.setattr(venv_module, "_create", counting)
    venv = await workspace_venv(worktree)
    assert venv.path == (repo / ".forgeline" / "venv").resolve()
    assert venv.python.exists() and venv.ready
    marker = venv.path / MARKER
    stamp = marker.stat().st_mtime_ns
    sentinel = venv.site_packages / "sentinel.txt"
    sentinel.write_text("still here")

    other = add_worktree(repo, "t2")
    again = [await workspace_venv(other), await workspace_venv(repo), await ensure_venv(repo)]
    assert all(each == venv for each in again)
    assert made == [venv.path]  # the later calls made nothing
    assert sentinel.read_text() == "still here"
    assert marker.stat().st_mtime_ns == stamp
    seeded = json.loads(marker.read_text())["seeded"]
    assert "pytest" in seeded and "pluggy" in seeded


async def test_concurrent_tasks_wait_for_one_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    real_create = venv_module._create

    def counting(target: WorkspaceVenv, seed: Sequence[str]) -> None:
        made.append(target.path)
        real_create(target, seed)

    monkeypatch.setattr(venv_module, "_create", counting)
    results = await asyncio.gather(*(ensure_venv(tmp_path) for _ in range(4)))
    assert len(set(results)) == 1
    assert len(made) == 1


async def test_a_half_made_venv_or_one_from_another_python_is_made_again(repo: Path) -> None:
    venv = await ensure_venv(repo)
    sentinel = venv.site_packages / "sentinel.txt"
    marker = venv.path / MARKER

    sentinel.write_text("x")
    data = json.loads(marker.read_text())
    data["python"]["version"] = "2.7.18"
    marker.write_text(json.dumps(data))
    assert not venv.ready
    await ensure_venv(repo)
    assert venv.ready and not sentinel.exists()

    sentinel.write_text("x")
    marker.unlink()  # a crash before the marker: incomplete
    await ensure_venv(repo)
    assert venv.ready and not sentinel.exists()


# --------------------------------------------------------------------------- what runs


async def test_the_venv_has_its_own_pytest_and_none_of_forgelines_packages(repo: Path) -> None:
    venv = await ensure_venv(repo)
    argv = [str(venv.python), "-c", IMPORTS]
    result = await LocalSpawner().run(argv, cwd=repo, mounts=venv.mounts(), timeout=60)
    assert result.ok, result.output
    seen = json.loads(result.stdout)
    assert seen["prefix"] == str(venv.path)
    assert Path(seen["pytest"]).is_relative_to(venv.site_packages)
    assert seen["missing"] == ["forgeline", "pydantic", "pytest_asyncio", "pytest_timeout"]
    # pip sees an ordinary installation, installed by forgeline.
    installer = next(venv.site_packages.glob("pytest-*.dist-info")) / "INSTALLER"
    assert installer.read_text() == "forgeline\n"


async def test_tests_run_with_the_venvs_interpreter(worktree: Path) -> None:
    venv = await workspace_venv(worktree)
    (worktree / "test_where.py").write_text(WHERE_TESTS.format(prefix=str(venv.path)))
    report = await run_pytest(worktree, LocalSpawner(), timeout=120, venv=venv)
    assert (report.passed, report.failed, report.errors) == (2, 0, 0), report.output
    assert report.usage is not None and report.usage.cpu_s is not None
    assert report.usage.cpu_s > 0 and report.usage.wall_s > 0
    # forgeline's own interpreter, by contrast, brings its plugins along.
    plain = await run_pytest(worktree, LocalSpawner(), timeout=120)
    assert plain.failed == 2


@pytest.mark.sandbox
async def test_sandboxed_tests_run_with_the_venv_which_they_cannot_change(
    worktree: Path, sandbox: RecordingSandbox
) -> None:
    venv = await workspace_venv(worktree)
    (worktree / "test_where.py").write_text(
        WHERE_TESTS.format(prefix=str(venv.path))
        + f"""

def test_the_venv_is_read_only():
    import pytest
    with pytest.raises(OSError):
        open({str(venv.site_packages / "planted.py")!r}, "w")
"""
    )
    report = await run_pytest(worktree, sandbox, timeout=120, venv=venv)
    assert (report.passed, report.failed, report.errors) == (3, 0, 0), report.output
    assert report.usage is not None and report.usage.mechanism != "none"
    assert not (venv.site_packages / "planted.py").exists()
    [(argv, binds)] = sandbox.calls
    assert argv[0] == str(venv.python)
    assert Bind(venv.path, writable=False) in binds


async def test_smoke_runs_use_the_venv_and_report_usage(worktree: Path) -> None:
    venv = await workspace_venv(worktree)
    spec = RunSpec(kind="cli", command=("python", "-c", "import sys; print(sys.prefix)"))
    result = await smoke(spec, worktree, LocalSpawner(), timeout=60, venv=venv)
    assert result.ok, result.output
    assert str(venv.path) in result.output
    assert result.usage is not None and result.usage.cpu_s is not None


# --------------------------------------------------------------------------- installs


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-e", "."], "option '-e'"),
        (["."], "not a requirement specifier"),
        (["./pkg"], "not a requirement specifier"),
        (["https://example.invalid/x.whl"], "not a requirement specifier"),
        (["pkg @ https://example.invalid/x.whl"], "direct reference"),
        (["--index-url", "https://example.invalid"], "option '--index-url'"),
        (["--extra-index-url=https://example.invalid", "x"], "option '--extra-index-url'"),
        (["-i", "https://example.invalid", "x"], "option '-i'"),
        (["-r", "../reqs.txt"], "cannot read requirements file"),
        (["-U"], "at least one requirement"),
    ],
)
def test_install_arguments_are_requirement_specifiers_only(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    with pytest.raises(VenvError, match=reason):
        parse_install_args(args, tmp_path)


def test_a_requirements_file_in_the_workspace_is_read_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# deps\nrequests>=2.0  # http\n\nrich[jupyter]\n")
    request = parse_install_args(["-U", "-r", "requirements.txt", "--pre"], tmp_path)
    assert request.requirements == ("requests>=2.0", "rich[jupyter]")
    assert request.flags == ("--upgrade", "--pre")
    (tmp_path / "bad.txt").write_text("--index-url https://example.invalid\nx\n")
    with pytest.raises(VenvError, match=r"bad.txt line 1"):
        parse_install_args(["-r", "bad.txt"], tmp_path)


async def test_an_install_goes_through_the_spawner(worktree: Path) -> None:
    venv = await workspace_venv(worktree)
    make_wheel(venv.wheelhouse, "tinypkg", "0.1", "X = 41\n")
    spawner = RecordingLocal()
    terminal = Terminal(worktree, spawner, TerminalConfig(installs="wheelhouse"), venv=venv)
    outcome = await terminal.run(["pip", "install", "tinypkg==0.1"])
    assert outcome.ok, outcome.output
    assert outcome.rule == "pip install" and outcome.usage is not None
    [install] = spawner.calls
    assert install[:4] == (str(venv.python), "-m", "pip", "install")
    assert "--no-index" in install and install[-1] == "tinypkg==0.1"
    used = await terminal.run(["python", "-c", "import tinypkg; print(tinypkg.X + 1)"])
    assert used.output == "42\n"
    assert (venv.site_packages / "pip").is_dir()  # seeded on the first install
    listed = await terminal.run(["pip", "list"])
    assert "tinypkg" in listed.output and "pytest" in listed.output


async def test_download_mode_fetches_on_the_host_and_installs_offline_in_the_spawner(
    worktree: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links"
    make_wheel(links, "tinydep", "1.0", "Y = 1\n")
    make_wheel(links, "tinyapp", "2.0", "from tinydep import Y\nZ = Y + 1\n", ["tinydep>=1"])
    venv = await workspace_venv(worktree)
    spawner = RecordingLocal()
    config = TerminalConfig(installs="download", use_index=False, find_links=(str(links),))
    terminal = Terminal(worktree, spawner, config, venv=venv)
    outcome = await terminal.run(["python", "-m", "pip", "install", "tinyapp"])
    assert outcome.ok, outcome.output
    assert "[download]" in outcome.output
    assert {p.name for p in venv.wheelhouse.iterdir()} >= {
        "tinydep-1.0-py3-none-any.whl",
        "tinyapp-2.0-py3-none-any.whl",
    }
    # The spawner ran the install only, offline; the download was forgeline's own pip.
    [install] = spawner.calls
    assert "--no-index" in install and "download" not in install
    used = await terminal.run(["python", "-c", "import tinyapp; print(tinyapp.Z)"])
    assert used.output == "2\n"


@pytest.mark.sandbox
async def test_a_sandboxed_install_writes_only_the_venv(
    worktree: Path, sandbox: RecordingSandbox
) -> None:
    venv = await workspace_venv(worktree)
    make_wheel(venv.wheelhouse, "tinypkg", "0.1", "X = 41\n")
    terminal = Terminal(worktree, sandbox, TerminalConfig(installs="wheelhouse"), venv=venv)
    outcome = await terminal.run(["pip", "install", "tinypkg"])
    assert outcome.ok, outcome.output
    assert outcome.usage is not None and outcome.usage.mechanism != "none"
    (argv, binds), *_ = sandbox.calls
    assert argv[:4] == (str(venv.python), "-m", "pip", "install")
    assert Bind(venv.path, writable=True) in binds
    assert Bind(venv.wheelhouse, writable=False) in binds
    used = await terminal.run(["python", "-c", "import tinypkg; print(tinypkg.X + 1)"])
    assert used.output == "42\n", used.output
    # An ordinary run sees the venv read-only again.
    write = await terminal.run(
        ["python", "-c", f"open({str(venv.site_packages / 'planted.py')!r}, 'w')"]
    )
    assert not write.ok and not (venv.site_packages / "planted.py").exists()


async def test_installs_can_be_turned_off_and_need_the_venv(worktree: Path) -> None:
    venv = await workspace_venv(worktree)
    off = Terminal(worktree, LocalSpawner(), TerminalConfig(installs="off"), venv=venv)
    outcome = await off.run(["pip", "install", "x"])
    assert not outcome.allowed and outcome.rule == INSTALL_RULE
    assert "turned off" in outcome.reason
    novenv = Terminal(worktree, LocalSpawner())
    outcome = await novenv.run(["pip", "install", "x"])
    assert not outcome.allowed and "workspace_venv" in outcome.reason
    bad = await Terminal(worktree, LocalSpawner(), venv=venv).run(["pip", "install", "-e", "."])
    assert not bad.allowed and bad.rule == INSTALL_RULE and "'-e'" in bad.reason
