"""LocalSpawner with real child processes: output, environment, timeouts and process groups."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgeline.sandbox.groups import stop_process_group
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import SpawnedProcess, SpawnError, tail_text

PY = sys.executable

# A child that starts a grandchild (same process group), prints its pid, then sleeps.
SPAWN_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


@pytest.fixture
def spawner() -> LocalSpawner:
    return LocalSpawner(kill_grace=1.0)


async def test_captures_stdout_stderr_and_exit_code(spawner: LocalSpawner, tmp_path: Path) -> None:
    code = "import sys; print('hello'); sys.stderr.write('oops\\n'); sys.exit(3)"
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, timeout=10)
    assert result.exit_code == 3
    assert result.stdout == "hello\n"
    assert result.stderr == "oops\n"
    assert not result.timed_out
    assert not result.ok
    assert result.duration_s > 0
    assert result.argv == (PY, "-c", code)


async def test_runs_in_cwd_with_stdin_closed(spawner: LocalSpawner, tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(repr(sys.stdin.read()))"
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, timeout=10)
    assert result.ok
    assert result.stdout.splitlines() == [str(tmp_path.resolve()), "''"]


async def test_output_is_bounded_to_its_tail(spawner: LocalSpawner, tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000 + 'END'); sys.stderr.write('short')"
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, timeout=20, max_output=100)
    assert result.ok
    assert result.stdout_truncated
    assert result.stdout.endswith("x" * 97 + "END")
    assert "truncated" in result.stdout.splitlines()[0]
    assert len(result.stdout.splitlines()[1]) == 100
    assert result.stderr == "short"
    assert not result.stderr_truncated


def test_tail_text() -> None:
    assert tail_text("abc", 5) == "abc"
    cut = tail_text("abcdef", 2)
    assert cut.endswith("\nef")
    assert "4 earlier characters truncated" in cut
    assert tail_text("abc", 0).endswith("\n")


async def test_environment_is_an_allowlist(
    spawner: LocalSpawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGELINE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("TZ", "UTC")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, env={"GIVEN": "yes"}, timeout=10)
    assert result.ok, result.stderr
    env = json.loads(result.stdout)
    assert "FORGELINE_TEST_SECRET" not in env
    assert "OPENAI_API_KEY" not in env
    assert env["GIVEN"] == "yes"
    assert env["TZ"] == "UTC"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env.get("PATH") == os.environ.get("PATH")
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "GIVEN"}
    allowed |= {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "LC_CTYPE"}  # CPython may set it
    assert set(env) <= allowed


async def test_a_string_argv_is_refused(spawner: LocalSpawner, tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="not a string"):
        await spawner.run("echo hi", cwd=tmp_path)
    with pytest.raises(SpawnError, match="not a string"):
        await spawner.start("echo hi", cwd=tmp_path, log_path=tmp_path / "log")
    with pytest.raises(SpawnError, match="empty"):
        await spawner.run([], cwd=tmp_path)


async def test_missing_program_or_cwd_is_a_spawn_error(
    spawner: LocalSpawner, tmp_path: Path
) -> None:
    with pytest.raises(SpawnError, match="could not start"):
        await spawner.run(["forgeline-no-such-program-xyz"], cwd=tmp_path)
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    with pytest.raises(SpawnError, match=r"could not start '\./not-executable\.sh': .*denied"):
        await spawner.run(["./not-executable.sh"], cwd=tmp_path)
    with pytest.raises(SpawnError, match="does not exist"):
        await spawner.run([PY, "-c", "pass"], cwd=tmp_path / "missing")


async def test_timeout_kills_the_whole_process_group(spawner: LocalSpawner, tmp_path: Path) -> None:
    started = time.monotonic()
    result = await spawner.run([PY, "-c", SPAWN_GRANDCHILD], cwd=tmp_path, timeout=1.0)
    assert time.monotonic() - started < 5
    assert result.timed_out
    assert not result.ok
    assert result.exit_code is not None
    assert result.exit_code < 0  # killed by a signal
    grandchild = int(result.stdout.split()[0])
    assert wait_gone(grandchild), f"grandchild {grandchild} survived the timeout"


async def test_leftover_background_processes_are_killed(
    spawner: LocalSpawner, tmp_path: Path
) -> None:
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, timeout=10)
    assert result.ok
    assert not result.timed_out
    assert wait_gone(int(result.stdout))


async def test_sigterm_is_followed_by_sigkill(tmp_path: Path) -> None:
    spawner = LocalSpawner(kill_grace=0.3)
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = await spawner.run([PY, "-c", code], cwd=tmp_path, timeout=0.5)
    assert result.timed_out
    assert result.exit_code == -9
    assert result.stdout == "ready\n"
    # Killed, it still says what it used.
    assert result.usage is not None
    assert result.usage.cpu_s is not None and result.usage.peak_memory_bytes is not None


async def wait_for_log(path: Path, text: str, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


async def test_start_and_stop_a_long_running_process(spawner: LocalSpawner, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "server.log"
    code = SPAWN_GRANDCHILD.replace("print(child.pid", "print('ready', child.pid")
    process = await spawner.start([PY, "-c", code], cwd=tmp_path, log_path=log)
    assert isinstance(process, SpawnedProcess)
    content = await wait_for_log(log, "ready")
    grandchild = int(content.split()[1])
    assert process.returncode is None
    assert alive(process.pid)

    code_after = await process.stop(timeout=2)
    assert code_after is not None
    assert process.returncode == code_after
    assert wait_gone(process.pid)
    assert wait_gone(grandchild)
    # Stopping twice is harmless, and the group is gone for `forgeline stop` too.
    assert await process.stop() == code_after
    assert stop_process_group(process.pid) is False


async def test_started_process_output_and_exit(spawner: LocalSpawner, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    code = "import sys; print('to log'); sys.stderr.write('err too\\n'); sys.exit(4)"
    process = await spawner.start([PY, "-c", code], cwd=tmp_path, log_path=log)
    assert await process.wait() == 4
    assert process.returncode == 4
    assert log.read_text().splitlines() == ["to log", "err too"]


def test_stop_process_group_of_a_detached_group(tmp_path: Path) -> None:
    leader = subprocess.Popen(
        [PY, "-c", SPAWN_GRANDCHILD],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert leader.stdout is not None
        grandchild = int(leader.stdout.readline())
        assert stop_process_group(leader.pid, grace=2.0) is True
        leader.wait(timeout=5)
        assert wait_gone(grandchild)
        assert stop_process_group(leader.pid) is False
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        if leader.stdout is not None:
            leader.stdout.close()


def test_stop_process_group_on_a_gone_pid() -> None:
    done = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True)
    assert stop_process_group(int(done.stdout)) is False


def test_stop_process_group_refuses_its_own_group_and_init() -> None:
    with pytest.raises(SpawnError):
        stop_process_group(os.getpgrp())
    with pytest.raises(SpawnError):
        stop_process_group(1)
