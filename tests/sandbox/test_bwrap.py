"""BwrapSandbox with real processes: the spawner protocol, the workspace, limits, pytest.

Nothing here reaches beyond 127.0.0.1; every run is bounded by a timeout. When bubblewrap
cannot work on this machine these tests fail with the reason (``bwrap_ready``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from forgeline.errors import ForgelineError
from forgeline.runs.testrun import run_pytest
from forgeline.sandbox import bwrap as bwrap_module
from forgeline.sandbox import select as select_module
from forgeline.sandbox.bwrap import (
    SANDBOX_UID,
    BwrapSandbox,
    ResourceLimits,
    detect_cgroups,
    sandbox_available,
)
from forgeline.sandbox.bwrap import cgroups as cgroups_module
from forgeline.sandbox.groups import stop_process_group
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.select import (
    SandboxUnavailableError,
    UnsafeSpawnerWarning,
    choose_spawner,
)
from forgeline.sandbox.spawner import Bind, Mounts, SpawnedProcess, SpawnError
from tests.conftest import free_port
from tests.sandbox.conftest import marker_pids, wait_no_marker

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("bwrap_ready")]

PY = sys.executable

# A child that starts a grandchild carrying the marker, prints "ready", then sleeps.
SPAWN_GRANDCHILD = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def sandbox() -> BwrapSandbox:
    return BwrapSandbox(kill_grace=1.0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def test_captures_output_exit_code_and_usage(sandbox: BwrapSandbox, workspace: Path) -> None:
    code = "import sys; print('hello'); sys.stderr.write('oops\\n'); sys.exit(3)"
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=20)
    assert result.exit_code == 3
    assert result.stdout == "hello\n"
    assert result.stderr == "oops\n"
    assert not result.timed_out
    assert not result.ok
    assert result.argv == (PY, "-c", code)
    assert result.usage is not None
    assert result.usage.mechanism == sandbox.limits_mechanism
    assert result.usage.wall_s == result.duration_s > 0
    assert result.usage.cpu_s is not None and result.usage.cpu_s > 0
    assert result.usage.peak_memory_bytes is not None and result.usage.peak_memory_bytes > 0


async def test_runs_in_the_workspace_as_an_unprivileged_user(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    code = (
        "import os, sys; print(os.getcwd()); print(repr(sys.stdin.read())); "
        "print(os.getuid(), os.geteuid(), os.getgid())"
    )
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=20)
    assert result.ok, result.output
    cwd, stdin, ids = result.stdout.splitlines()
    assert cwd == str(workspace.resolve())
    assert stdin == "''"
    assert ids.split() == [str(SANDBOX_UID), str(SANDBOX_UID), str(bwrap_module.SANDBOX_GID)]
    assert SANDBOX_UID != 0

    caps = await sandbox.run(["grep", "^Cap", "/proc/self/status"], cwd=workspace, timeout=20)
    assert caps.ok, caps.output
    for line in caps.stdout.splitlines():
        assert line.split()[1] == "0000000000000000", line


async def test_workspace_is_writable_and_files_belong_to_forgeline_user(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    (workspace / "given.txt").write_text("from the host\n")
    code = (
        "import os, pathlib\n"
        "print(pathlib.Path('given.txt').read_text(), end='')\n"
        "pathlib.Path('made.txt').write_text('from the sandbox\\n')\n"
        "os.mkdir('sub'); pathlib.Path('sub/deep.txt').write_text('deep')\n"
        "pathlib.Path('given.txt').write_text('changed\\n')\n"
    )
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=20)
    assert result.ok, result.output
    assert result.stdout == "from the host\n"
    assert (workspace / "made.txt").read_text() == "from the sandbox\n"
    assert (workspace / "given.txt").read_text() == "changed\n"
    for path in (workspace / "made.txt", workspace / "sub", workspace / "sub" / "deep.txt"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid()), path
    # forgeline (the host user) can clean the workspace up again.
    (workspace / "sub" / "deep.txt").unlink()


async def test_output_is_bounded_to_its_tail(sandbox: BwrapSandbox, workspace: Path) -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000 + 'END'); sys.stderr.write('short')"
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=30, max_output=100)
    assert result.ok, result.stderr
    assert result.stdout_truncated
    assert result.stdout.endswith("x" * 97 + "END")
    assert result.stderr == "short"


async def test_environment_is_an_allowlist(
    sandbox: BwrapSandbox, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGELINE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("TZ", "UTC")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = await sandbox.run([PY, "-c", code], cwd=workspace, env={"GIVEN": "yes"}, timeout=20)
    assert result.ok, result.stderr
    env = json.loads(result.stdout)
    assert "FORGELINE_TEST_SECRET" not in env
    assert "OPENAI_API_KEY" not in env
    assert env["GIVEN"] == "yes"
    assert env["TZ"] == "UTC"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == env["TMPDIR"] == "/tmp"  # the host's do not exist in the sandbox
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "GIVEN"}
    allowed |= {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "LC_CTYPE"}
    allowed.add("PWD")  # bubblewrap sets it to the workspace (--chdir)
    assert env["PWD"] == str(workspace.resolve())
    assert set(env) <= allowed


async def test_bad_argv_and_missing_program(sandbox: BwrapSandbox, workspace: Path) -> None:
    with pytest.raises(SpawnError, match="not a string"):
        await sandbox.run("echo hi", cwd=workspace)
    with pytest.raises(SpawnError, match="empty"):
        await sandbox.run([], cwd=workspace)
    with pytest.raises(SpawnError, match="could not start"):
        await sandbox.run(["forgeline-no-such-program-xyz"], cwd=workspace)
    with pytest.raises(SpawnError, match="does not exist"):
        await sandbox.run([PY, "-c", "pass"], cwd=workspace / "missing")
    with pytest.raises(SpawnError, match="refusing"):
        await sandbox.run(["true"], cwd=Path("/"))


async def test_timeout_kills_the_whole_tree(
    sandbox: BwrapSandbox, workspace: Path, marker: str
) -> None:
    started = time.monotonic()
    result = await sandbox.run([PY, "-c", SPAWN_GRANDCHILD, marker], cwd=workspace, timeout=2)
    assert time.monotonic() - started < 8
    assert result.timed_out
    assert not result.ok
    assert result.exit_code is not None and result.exit_code < 0
    assert result.stdout == "ready\n"
    assert wait_no_marker(marker) == []


async def test_leftover_background_processes_are_killed(
    sandbox: BwrapSandbox, workspace: Path, marker: str
) -> None:
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]],\n"
        "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,\n"
        "                 start_new_session=True)\n"
        "print('done')\n"
    )
    result = await sandbox.run([PY, "-c", code, marker], cwd=workspace, timeout=20)
    assert result.ok, result.output
    assert result.duration_s < 10  # the run ends with its main process
    assert wait_no_marker(marker) == []


async def test_sigterm_is_followed_by_sigkill(workspace: Path) -> None:
    sandbox = BwrapSandbox(kill_grace=0.3)
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=1)
    assert result.timed_out
    assert result.exit_code == -9
    assert result.stdout == "ready\n"


async def wait_for_log(path: Path, text: str, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


async def test_start_and_stop_a_long_running_process(
    sandbox: BwrapSandbox, workspace: Path, tmp_path: Path, marker: str
) -> None:
    log = tmp_path / "logs" / "server.log"
    process = await sandbox.start([PY, "-c", SPAWN_GRANDCHILD, marker], cwd=workspace, log_path=log)
    assert isinstance(process, SpawnedProcess)
    await wait_for_log(log, "ready")
    assert process.returncode is None
    assert len(marker_pids(marker)) >= 2  # the child and its grandchild

    code = await process.stop(timeout=2)
    assert code is not None and code < 0
    assert process.returncode == code
    assert wait_no_marker(marker) == []
    assert await process.stop() == code  # stopping twice is harmless
    assert stop_process_group(process.pid) is False


async def test_started_process_output_and_exit(
    sandbox: BwrapSandbox, workspace: Path, tmp_path: Path
) -> None:
    log = tmp_path / "out.log"
    code = "import sys; print('to log'); sys.stderr.write('err too\\n'); sys.exit(4)"
    process = await sandbox.start([PY, "-c", code], cwd=workspace, log_path=log)
    assert await asyncio.wait_for(process.wait(), 20) == 4
    assert process.returncode == 4
    assert log.read_text().splitlines() == ["to log", "err too"]
    assert process.usage is not None


async def test_stop_process_group_from_elsewhere_takes_the_sandbox_down(
    sandbox: BwrapSandbox, workspace: Path, tmp_path: Path, marker: str
) -> None:
    code = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]],\n"
        "                 start_new_session=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "detached.log"
    process = await sandbox.start([PY, "-c", code, marker], cwd=workspace, log_path=log)
    await wait_for_log(log, "ready")
    assert await asyncio.to_thread(stop_process_group, process.pid, 2.0) is True
    assert await asyncio.wait_for(process.wait(), 10) != 0
    assert wait_no_marker(marker) == []


async def test_a_started_web_app_is_reachable_on_its_port(
    sandbox: BwrapSandbox, workspace: Path, tmp_path: Path
) -> None:
    (workspace / "index.html").write_text("hello from the sandbox")
    port = free_port()
    argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    process = await sandbox.start(
        argv, cwd=workspace, env={"PORT": str(port)}, log_path=tmp_path / "web.log"
    )
    try:
        body = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                body = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/index.html", timeout=3
                    ).read()
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert body == b"hello from the sandbox"
    finally:
        await process.stop(2)
    assert process.returncode is not None
    with pytest.raises(OSError):  # the forward is closed with the app
        urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2)


async def test_pytest_runs_inside_the_sandbox(workspace: Path) -> None:
    (workspace / "test_sample.py").write_text(
        "import os\n"
        "def test_ok():\n    assert os.getuid() != 0\n"
        "def test_bad():\n    assert 1 == 2\n"
    )
    before = sorted(p.name for p in workspace.iterdir())
    report = await run_pytest(workspace, BwrapSandbox(), timeout=120)
    assert (report.passed, report.failed, report.errors) == (1, 1, 0), report.output
    assert report.failing == ("test_sample.py::test_bad",)
    assert sorted(p.name for p in workspace.iterdir()) == before  # nothing written into it


async def test_extra_binds(workspace: Path, tmp_path: Path) -> None:
    shared_ro = tmp_path / "ro"
    shared_rw = tmp_path / "rw"
    per_call = tmp_path / "call"
    for path in (shared_ro, shared_rw, per_call):
        path.mkdir()
        (path / "in.txt").write_text(path.name)
    sandbox = BwrapSandbox(extra_ro=[shared_ro], extra_rw=[shared_rw])
    code = (
        "import sys\n"
        "for d in sys.argv[1:]:\n"
        "    print(open(d + '/in.txt').read(), end=' ')\n"
        "    try:\n"
        "        open(d + '/out.txt', 'w').write('x'); print('w')\n"
        "    except OSError:\n"
        "        print('ro')\n"
    )
    result = await sandbox.run(
        [PY, "-c", code, str(shared_ro), str(shared_rw), str(per_call)],
        cwd=workspace,
        timeout=20,
        mounts=Mounts(binds=(Bind(per_call, writable=True),)),
    )
    assert result.ok, result.output
    assert result.stdout.splitlines() == ["ro ro", "rw w", "call w"]
    assert not (shared_ro / "out.txt").exists()
    assert (shared_rw / "out.txt").read_text() == "x"


async def test_limits_use_cgroups_when_writable(workspace: Path) -> None:
    support = detect_cgroups()
    sandbox = BwrapSandbox()
    if support.version is None:
        assert sandbox.limits_mechanism == "rlimit"
        return
    assert sandbox.limits_mechanism == f"cgroup-{support.version}"
    code = "import os; print(open('/proc/self/cgroup').read())"
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=20)
    assert result.ok, result.output
    assert result.usage is not None and result.usage.peak_pids is not None
    # The per-run cgroups are removed afterwards.
    for parent in set(support.controllers.values()):
        leftovers = [p.name for p in parent.iterdir() if p.name.startswith("forgeline-")]
        assert not [name for name in leftovers if f"forgeline-{os.getpid()}-" in name]


async def test_rlimit_fallback_limits_memory_and_cpu(workspace: Path) -> None:
    limits = ResourceLimits(memory_bytes=256 * 1024**2, cpu_seconds=1)
    sandbox = BwrapSandbox(use_cgroups=False, limits=limits)
    assert sandbox.limits_mechanism == "rlimit"
    hog = "x = [b'a' * (32 << 20) for _ in range(64)]"
    result = await sandbox.run([PY, "-c", hog], cwd=workspace, timeout=30)
    assert not result.ok
    assert "MemoryError" in result.stderr
    assert result.usage is not None and result.usage.mechanism == "rlimit"

    started = time.monotonic()
    spin = await sandbox.run([PY, "-c", "while True: pass"], cwd=workspace, timeout=30)
    assert time.monotonic() - started < 15
    assert not spin.ok and not spin.timed_out
    assert spin.usage is not None and "cpu" in spin.usage.limits_hit


# --------------------------------------------------------------------------- choose_spawner


def test_choose_spawner_prefers_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select_module, "sandbox_available", lambda: None)
    extra = Path("/nonexistent-extra")
    spawner = choose_spawner(require_sandbox=False, allow_unsafe=True, workspace_extra=[extra])
    assert isinstance(spawner, BwrapSandbox)
    assert spawner.extra_rw == (extra,)
    assert isinstance(choose_spawner(require_sandbox=True, allow_unsafe=False), BwrapSandbox)


def test_choose_spawner_when_required_but_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select_module, "sandbox_available", lambda: "bwrap is missing here")
    with pytest.raises(SandboxUnavailableError, match="bwrap is missing here") as caught:
        choose_spawner(require_sandbox=True, allow_unsafe=True)
    assert isinstance(caught.value, ForgelineError)
    assert "bubblewrap" in str(caught.value)


def test_choose_spawner_unsafe_fallback_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select_module, "sandbox_available", lambda: "user namespaces are off")
    with pytest.warns(UnsafeSpawnerWarning, match="user namespaces are off") as warned:
        spawner = choose_spawner(require_sandbox=False, allow_unsafe=True)
    assert isinstance(spawner, LocalSpawner)
    assert "NOT sandboxed" in str(warned[0].message)


def test_choose_spawner_refuses_without_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select_module, "sandbox_available", lambda: "bwrap is missing here")
    with pytest.raises(SandboxUnavailableError) as caught:
        choose_spawner(require_sandbox=False, allow_unsafe=False)
    message = str(caught.value)
    assert "no isolation available (bwrap is missing here)" in message
    assert "install bubblewrap" in message
    assert "--unsafe-no-sandbox" in message


def test_sandbox_available_reports_a_missing_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        reason = sandbox_available(refresh=True)
        assert reason is not None and "bwrap" in reason
    finally:
        monkeypatch.undo()
        assert sandbox_available(refresh=True) is None


def test_nothing_of_ours_is_left_running() -> None:
    done = subprocess.run(["ps", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True)
    mine = [
        line
        for line in done.stdout.splitlines()[1:]
        if "forgeline-marker-" in line and " Z" not in line and "ps -eo" not in line
    ]
    assert mine == []


def test_cgroup_v2_detection_and_limits_on_a_fake_hierarchy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cgroup v2 controllers on every test machine: the v2 paths against plain files.
    root = tmp_path / "cgroup"
    base = root / "user.slice" / "forgeline.scope"
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text("cpu memory pids io\n")
    (base / "cgroup.subtree_control").write_text("cpu memory pids\n")  # already enabled
    monkeypatch.setattr(cgroups_module, "_own_cgroups", lambda: {"": "/user.slice/forgeline.scope"})
    support = cgroups_module._detect_v2(root)
    assert support.version == "v2", support.reason
    assert support.mechanism == "cgroup-v2"
    assert set(support.controllers.values()) == {base}
    limits = ResourceLimits(memory_bytes=123 * 1024**2, pids=10, cpu_cores=0.5)
    cgroup = cgroups_module.RunCgroup(support, limits)
    run_dir = cgroup.dirs["memory"]
    assert run_dir.parent == base and run_dir.name.startswith("forgeline-")
    assert (run_dir / "memory.max").read_text() == str(123 * 1024**2)
    assert (run_dir / "pids.max").read_text() == "12"  # + bwrap and its init
    assert (run_dir / "cpu.max").read_text() == "50000 100000"
    (run_dir / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 1\n")
    (run_dir / "memory.peak").write_text("4096\n")
    (run_dir / "memory.events").write_text("low 0\noom 1\noom_kill 1\n")
    (run_dir / "pids.events").write_text("max 3\n")
    assert cgroup.stats() == (2.5, 4096, None, ["memory", "pids"])

    (base / "cgroup.controllers").write_text("cpu io\n")
    assert "not delegated" in (cgroups_module._detect_v2(root).reason or "")
