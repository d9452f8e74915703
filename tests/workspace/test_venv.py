"""The venvs: the repository's made once and reused, a task's made from it by hard links,
pytest in them without a network, the tests and programs run with their interpreter
(real venvs, real processes; the ``sandbox`` tests fail, never skip, without
bubblewrap). Installs are ``test_sync.py``'s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from forgeline.core.events import RunSpec
from forgeline.runs.preview import smoke
from forgeline.runs.testrun import run_pytest
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import Bind
from forgeline.workspace import venv as venv_module
from forgeline.workspace.venv import (
    MARKER,
    TASK_VENVS_DIR,
    WorkspaceVenv,
    ensure_venv,
    task_venv,
    workspace_venv,
)
from tests.workspace.helpers import RecordingSandbox, add_worktree

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


# --------------------------------------------------------------------------- once


async def test_the_venv_is_made_once_per_repository_and_each_task_gets_its_own_from_it(
    repo: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    real_create = venv_module._create

    def counting(target: WorkspaceVenv, seed: Sequence[str]) -> None:
        made.append(target.path)
        real_create(target, seed)

    monkeypatch.setattr(venv_module, "_create", counting)
    venv = await workspace_venv(worktree)
    template = WorkspaceVenv.of(repo)
    assert venv.path == (repo / TASK_VENVS_DIR / "t1").resolve()
    assert venv.wheelhouse == template.wheelhouse  # one wheel cache per repository
    assert venv.python.exists() and venv.ready and template.ready
    marker = venv.path / MARKER
    stamp = marker.stat().st_mtime_ns
    sentinel = venv.site_packages / "sentinel.txt"
    sentinel.write_text("still here")

    other = add_worktree(repo, "t2")
    second = await workspace_venv(other)
    assert second.path == (repo / TASK_VENVS_DIR / "t2").resolve()
    assert not (second.site_packages / "sentinel.txt").exists()  # its own venv
    again = [await workspace_venv(worktree), await task_venv(repo, "t1")]
    assert all(each == venv for each in again)
    assert await workspace_venv(repo) == template == await ensure_venv(repo)
    assert made == [template.path]  # the task venvs were linked, not made
    assert sentinel.read_text() == "still here"
    assert marker.stat().st_mtime_ns == stamp
    seeded = json.loads(marker.read_text())["seeded"]
    assert "pytest" in seeded and "pluggy" in seeded and "pip" in seeded
    # Made by hard links: the task's files are the template's (no copy, no disk).
    init = Path("pytest") / "__init__.py"
    assert (second.site_packages / init).samefile(template.site_packages / init)


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
