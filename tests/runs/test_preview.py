"""smoke and start_preview with real programs in temporary workspaces (loopback only)."""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from forgeline.core.events import RunSpec
from forgeline.runs.preview import (
    DeployResult,
    PreviewError,
    probe_health,
    smoke,
    start_preview,
)
from forgeline.sandbox.local import LocalSpawner

WEB_APP = """
import http.server, os, sys

port = int(sys.argv[1])
assert os.environ["PORT"] == str(port)
print(f"pid={os.getpid()} serving on {port}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else b"hello"
        self.send_response(200 if self.path in ("/health", "/") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

NEVER_HEALTHY = """
import os, time
print(f"pid={os.getpid()} booting, never ready", flush=True)
time.sleep(60)
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def fetch(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status, response.read()


@pytest.fixture
def spawner() -> LocalSpawner:
    return LocalSpawner(kill_grace=1.0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


# --------------------------------------------------------------------------- smoke


async def test_cli_smoke_ok(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "todo.py", "import sys\nprint('todo', *sys.argv[1:])\n")
    spec = RunSpec(kind="cli", command=("python", "todo.py", "--help"))
    result = await smoke(spec, workspace, spawner, timeout=10)
    assert result.ok
    assert result.kind == "cli"
    assert result.url is None
    assert result.pid is None
    assert "todo --help" in result.output
    assert "exit code 0" in result.output


async def test_cli_smoke_failing(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "todo.py", "raise SystemExit('bad flag')\n")
    spec = RunSpec(kind="cli", command=("python3", "todo.py"))
    result = await smoke(spec, workspace, spawner, timeout=10)
    assert not result.ok
    assert "bad flag" in result.output
    assert "exit code 1" in result.output


async def test_cli_smoke_timeout(spawner: LocalSpawner, workspace: Path) -> None:
    spec = RunSpec(kind="cli", command=("python", "-c", "import time; time.sleep(30)"))
    result = await smoke(spec, workspace, spawner, timeout=0.5)
    assert not result.ok
    assert "timed out" in result.output


async def test_missing_program_is_not_ok(spawner: LocalSpawner, workspace: Path) -> None:
    spec = RunSpec(kind="cli", command=("forgeline-no-such-program-xyz",))
    result = await smoke(spec, workspace, spawner, timeout=10)
    assert not result.ok
    assert "could not start" in result.output


async def test_library_default_compile_check(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "pkg/__init__.py", "")
    write(workspace, "pkg/core.py", "def f():\n    return 1\n")
    write(workspace, ".venv/lib/junk.py", "this is not python(\n")  # skipped
    spec = RunSpec(kind="library")
    result = await smoke(spec, workspace, spawner, timeout=20)
    assert result.ok, result.output
    assert "no smoke command was given" in result.output
    assert "compiled 2 Python files" in result.output

    write(workspace, "pkg/broken.py", "def f(:\n    pass\n")
    before = {str(p.relative_to(workspace)) for p in workspace.rglob("*")}
    result = await smoke(spec, workspace, spawner, timeout=20)
    assert not result.ok
    assert "SyntaxError" in result.output
    assert "broken.py" in result.output
    after = {str(p.relative_to(workspace)) for p in workspace.rglob("*")}
    assert after == before, "the compile check wrote bytecode into the workspace"


async def test_library_without_python_files(spawner: LocalSpawner, workspace: Path) -> None:
    result = await smoke(RunSpec(kind="library"), workspace, spawner, timeout=20)
    assert not result.ok
    assert "no Python files found" in result.output


# --------------------------------------------------------------------------- web


async def test_web_preview_starts_and_stops(
    spawner: LocalSpawner, workspace: Path, tmp_path: Path
) -> None:
    write(workspace, "app.py", WEB_APP)
    spec = RunSpec(kind="web", command=("python", "app.py", "{port}"), health_path="/health")
    result, process = await start_preview(
        spec, workspace, spawner, log_dir=tmp_path / "logs", startup_timeout=10
    )
    assert result.ok, result.output
    assert process is not None
    try:
        assert result.kind == "web"
        assert result.pid == process.pid
        assert result.url is not None
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", result.url)
        status, body = await asyncio.to_thread(fetch, result.url)
        assert (status, body) == (200, b"hello")
        assert process.returncode is None
    finally:
        await process.stop(timeout=2)
    assert wait_gone(process.pid)
    port = int(result.url.rsplit(":", 1)[1].rstrip("/"))
    assert await probe_health(port, "/health", timeout=0.5) is None


async def test_web_never_healthy(spawner: LocalSpawner, workspace: Path, tmp_path: Path) -> None:
    write(workspace, "app.py", NEVER_HEALTHY)
    spec = RunSpec(kind="web", command=("python", "app.py", "{port}"))
    started = time.monotonic()
    result, process = await start_preview(
        spec, workspace, spawner, log_dir=tmp_path / "logs", startup_timeout=1.0
    )
    assert time.monotonic() - started < 6
    assert process is None
    assert not result.ok
    assert result.url is None
    assert result.pid is None
    assert result.preview_id is None
    assert not list((tmp_path / "logs").glob("*.json"))  # nothing recorded to stop later
    assert "booting, never ready" in result.output
    assert "within 1s" in result.output
    match = re.search(r"pid=(\d+)", result.output)
    assert match is not None
    assert wait_gone(int(match.group(1)))


async def test_web_app_that_crashes(spawner: LocalSpawner, workspace: Path, tmp_path: Path) -> None:
    write(workspace, "app.py", "import sys\nsys.exit('cannot bind: config missing')\n")
    spec = RunSpec(kind="web", command=("python", "app.py", "{port}"))
    started = time.monotonic()
    result, process = await start_preview(
        spec, workspace, spawner, log_dir=tmp_path / "logs", startup_timeout=10
    )
    assert time.monotonic() - started < 5
    assert process is None
    assert not result.ok
    assert "exited with code 1" in result.output
    assert "config missing" in result.output


async def test_web_smoke_starts_checks_and_stops(spawner: LocalSpawner, workspace: Path) -> None:
    write(workspace, "app.py", WEB_APP)
    spec = RunSpec(kind="web", command=("python", "app.py", "{port}"))
    result = await smoke(spec, workspace, spawner, timeout=10)
    assert result.ok, result.output
    assert result.url is None
    assert result.pid is None
    assert result.preview_id is None
    match = re.search(r"127\.0\.0\.1:(\d+)", result.output)
    assert match is not None
    assert await probe_health(int(match.group(1)), "/health", timeout=0.5) is None


async def test_start_preview_needs_a_web_spec(
    spawner: LocalSpawner, workspace: Path, tmp_path: Path
) -> None:
    with pytest.raises(PreviewError):
        await start_preview(RunSpec(kind="cli"), workspace, spawner, log_dir=tmp_path)
    result, process = await start_preview(RunSpec(kind="web"), workspace, spawner, log_dir=tmp_path)
    assert (result.ok, process) == (False, None)
    assert "no command" in result.output


def test_deploy_result_is_frozen() -> None:
    result = DeployResult(ok=True, kind="cli")
    with pytest.raises(ValueError, match="frozen"):
        result.ok = False  # type: ignore[misc]
