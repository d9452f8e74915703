"""What every ``ProcessSpawner`` backend does, checked once against each of them.

The interface the stages code against (``run``/``start`` with ``mounts``) must be the one
each backend really has, mounts and the environment must mean the same to all, cancelling
a run must stop its processes at once (the runtime cancels a cancelled task's stage, and
that cancellation has to reach the tests or the program it was running), and the usage a
run reports must be its own, however large forgeline itself has grown. The sandbox is
checked twice: as it runs here, and without cgroups (its rlimit fallback, where the
command runs behind the launcher).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import Bind, Mounts, ProcessSpawner
from tests.sandbox.conftest import marker_pids, wait_no_marker

PY = sys.executable

BACKENDS: dict[str, Callable[[], ProcessSpawner]] = {
    "local": lambda: LocalSpawner(kill_grace=1.0),
    "bwrap": lambda: BwrapSandbox(kill_grace=1.0),
    "bwrap-rlimit": lambda: BwrapSandbox(kill_grace=1.0, use_cgroups=False),
}

# Starts a grandchild that carries the marker, says "ready" in a file, then sleeps: a test
# run that would go on for ten minutes.
LONG_RUN = """
import pathlib, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])
pathlib.Path("ready").write_text("ready")
time.sleep(600)
"""

SHOW_ENV = (
    "import json, os, sys\n"
    "data = open(sys.argv[1]).read() if len(sys.argv) > 1 else None\n"
    "print(json.dumps([os.environ.get('VIRTUAL_ENV'), os.environ['PATH'], data]))\n"
)


@pytest.fixture(
    params=[
        pytest.param("bwrap", marks=pytest.mark.sandbox),
        pytest.param("bwrap-rlimit", marks=pytest.mark.sandbox),
        "local",
    ]
)
def spawner(request: pytest.FixtureRequest) -> ProcessSpawner:
    name: str = request.param
    if name.startswith("bwrap"):
        request.getfixturevalue("bwrap_ready")  # fails, never skips, without bubblewrap
    return BACKENDS[name]()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("method", ["run", "start"])
def test_each_backend_takes_what_the_protocol_offers(backend: str, method: str) -> None:
    cls = type(BACKENDS[backend]())
    wanted = inspect.signature(getattr(ProcessSpawner, method)).parameters
    offered = inspect.signature(getattr(cls, method)).parameters
    for name, param in wanted.items():
        assert name in offered, f"{cls.__name__}.{method} has no parameter {name!r}"
        assert offered[name].kind == param.kind, f"{cls.__name__}.{method}({name})"
        assert offered[name].default == param.default, f"{cls.__name__}.{method}({name})"
    extra = [
        n for n, p in offered.items() if n not in wanted and p.default is inspect.Parameter.empty
    ]
    assert not extra, f"{cls.__name__}.{method} needs more than the protocol gives: {extra}"


async def wait_for_file(path: Path, within: float = 20.0) -> None:
    for _ in range(int(within / 0.05)):
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


async def test_cancelling_a_run_kills_its_processes_and_reraises(
    spawner: ProcessSpawner, workspace: Path, marker: str
) -> None:
    run = asyncio.create_task(spawner.run([PY, "-c", LONG_RUN, marker], cwd=workspace, timeout=600))
    await wait_for_file(workspace / "ready")
    assert len(marker_pids(marker)) >= 1  # the grandchild is running (and its parent)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert run.cancelled()
    assert wait_no_marker(marker) == [], "processes of the cancelled run are still alive"


async def test_a_venv_comes_first_on_path_and_binds_are_readable(
    spawner: ProcessSpawner, workspace: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("shared data")
    mounts = Mounts(venv=venv, binds=(Bind(shared),))
    assert mounts.python == str(venv / "bin" / "python")

    argv = [PY, "-c", SHOW_ENV, str(shared / "data.txt")]
    result = await spawner.run(argv, cwd=workspace, mounts=mounts, timeout=30)
    assert result.ok, result.output
    virtual_env, path, data = json.loads(result.stdout)
    assert virtual_env == str(venv)
    assert path.split(":")[0] == str(venv / "bin")
    assert data == "shared data"

    # A run without mounts gets neither.
    plain = await spawner.run([PY, "-c", SHOW_ENV], cwd=workspace, timeout=30)
    assert plain.ok, plain.output
    virtual_env, path, _ = json.loads(plain.stdout)
    assert virtual_env is None
    assert str(venv) not in path

    # A detached start honours them too.
    log = tmp_path / "start.log"
    process = await spawner.start([PY, "-c", SHOW_ENV], cwd=workspace, mounts=mounts, log_path=log)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    virtual_env, path, _ = json.loads(log.read_text())
    assert (virtual_env, path.split(":")[0]) == (str(venv), str(venv / "bin"))


async def test_the_environment_reaches_the_command_as_given(
    spawner: ProcessSpawner, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a C locale Python sets LC_CTYPE in its own environment (locale coercion): a
    # Python process between forgeline and the command must not pass that on.
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_CTYPE", raising=False)
    plain = await spawner.run(["env"], cwd=workspace, env={"LANG": "C"}, timeout=30)
    assert plain.ok, plain.output
    assert "LANG=C" in plain.stdout.splitlines()
    assert not [line for line in plain.stdout.splitlines() if line.startswith("LC_CTYPE=")]
    given = await spawner.run(["env"], cwd=workspace, env={"LC_CTYPE": "C"}, timeout=30)
    assert given.ok, given.output
    assert "LC_CTYPE=C" in given.stdout.splitlines()


BALLAST = 320 * 1024**2


@pytest.fixture
def large_forgeline() -> Iterator[None]:
    """This process grown by a few hundred MB of written memory, as a long test session or
    a long-running server grows: the kernel carries a process's peak memory into what it
    execs, so a child started straight from it would report at least as much."""
    ballast = bytearray(BALLAST)
    ballast[::4096] = b"x" * (BALLAST // 4096)  # touch every page: resident, not reserved
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 >= BALLAST
    yield
    del ballast


@pytest.mark.usefixtures("large_forgeline")
async def test_a_runs_peak_memory_is_its_own_however_large_forgeline_is(
    spawner: ProcessSpawner, workspace: Path
) -> None:
    result = await spawner.run([PY, "-c", "pass"], cwd=workspace, timeout=30)
    assert result.ok, result.output
    assert result.usage is not None and result.usage.peak_memory_bytes is not None
    assert 0 < result.usage.peak_memory_bytes < 64 * 1024**2, result.usage
    assert result.usage.cpu_s is not None and result.usage.cpu_s < 10
