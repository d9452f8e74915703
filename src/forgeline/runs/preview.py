"""Smoke-run or start the program a task produced, as its ``RunSpec`` says.

``smoke`` runs a cli or library command once (a library with no command gets a syntax
check of every ``*.py``); ``start_preview`` starts a web app on a free loopback port, waits
for its health check and leaves it running. The health check speaks HTTP/1.0 over a plain
loopback socket: no proxies, no redirects, nothing but ``127.0.0.1``.

Both take the workspace's venv (``workspace.venv``): then a leading ``python`` is the
venv's interpreter, and a sandbox sees the venv read-only (``WorkspaceVenv.mounts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from forgeline.core.events import RunSpec, RunUsage
from forgeline.errors import ForgelineError
from forgeline.runs.preview_record import write_record
from forgeline.runs.usage import run_usage
from forgeline.sandbox.spawner import ProcessSpawner, SpawnedProcess, SpawnError, tail_text
from forgeline.workspace.venv import WorkspaceVenv, venv_mounts

__all__ = [
    "COMPILE_CHECK",
    "OUTPUT_LIMIT",
    "DeployResult",
    "PreviewError",
    "free_port",
    "probe_health",
    "smoke",
    "start_preview",
]

#: Characters of output kept in a ``DeployResult``.
OUTPUT_LIMIT = 8_000
_LOG_TAIL_BYTES = 64 * 1024
_PROBE_TIMEOUT_S = 2.0
_POLL_S = 0.1
_STOP_TIMEOUT_S = 5.0

#: The default smoke check of a library: compile (never import, never write bytecode)
#: every ``*.py`` under the working directory, skipping VCS, forgeline and venv folders.
COMPILE_CHECK = """\
import os, sys, traceback
skip = {".git", ".forgeline", ".venv", "__pycache__", "node_modules"}
count = bad = 0
for root, dirs, files in os.walk("."):
    dirs[:] = sorted(d for d in dirs if d not in skip)
    for name in sorted(files):
        if not name.endswith(".py"):
            continue
        path = os.path.relpath(os.path.join(root, name))
        count += 1
        try:
            with open(path, "rb") as f:
                compile(f.read(), path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            bad += 1
            sys.stdout.write("".join(traceback.format_exception_only(type(exc), exc)))
if count == 0:
    print("no Python files found")
    sys.exit(1)
print(f"compiled {count} Python files, {bad} with errors")
sys.exit(1 if bad else 0)
"""


class PreviewError(ForgelineError):
    """A preview was asked for something it cannot do (a web start for a non-web spec)."""


class DeployResult(BaseModel):
    """The outcome of a smoke run or a preview start (``DeployStatus`` carries it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    kind: Literal["cli", "library", "web"]
    url: str | None = None
    pid: int | None = None
    preview_id: str | None = None
    """The running preview's id (``preview_record``): how another process stops it."""
    output: str = ""
    usage: RunUsage | None = None
    """What a smoke run used (None for a web app, which keeps running or was stopped)."""


def _argv(command: tuple[str, ...], python: str) -> list[str]:
    argv = list(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


def _bounded(text: str) -> str:
    return tail_text(text, OUTPUT_LIMIT)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def probe_health(
    port: int,
    path: str,
    timeout: float = _PROBE_TIMEOUT_S,
) -> int | None:
    """GET ``path`` from 127.0.0.1:``port``; the HTTP status, or None if nothing answered."""

    async def get() -> int | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            request = (
                f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
                "User-Agent: forgeline-preview\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        parts = status_line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None

    try:
        return await asyncio.wait_for(get(), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return None


def _health_path(path: str) -> str | None:
    """The request target for ``health_path``, or None if it is not a safe origin path."""
    path = path or "/"
    if not path.startswith("/"):
        path = "/" + path
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in path):
        return None
    return path


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(size - _LOG_TAIL_BYTES, 0))
            data = log.read()
    except OSError as exc:
        return f"(could not read the log {path}: {exc})\n"
    return data.decode("utf-8", errors="replace")


async def smoke(
    spec: RunSpec,
    workspace: Path,
    spawner: ProcessSpawner,
    *,
    timeout: float = 60,
    venv: WorkspaceVenv | None = None,
) -> DeployResult:
    """Run the program once as ``spec`` says; ok when it exits 0 within ``timeout``.

    A leading ``python``/``python3`` in the command becomes the venv's interpreter (with
    ``venv``, which a sandbox sees read-only), else forgeline's own. With no command, a
    cli or library gets ``COMPILE_CHECK`` (a syntax check of every ``*.py``, no imports, no
    bytecode written). A web spec is started with ``start_preview``, checked, and stopped.
    """
    mounts = venv_mounts(venv)
    python = mounts.python
    if spec.kind == "web":
        with tempfile.TemporaryDirectory(prefix="forgeline-smoke-") as log_dir:
            result, process = await start_preview(
                spec,
                workspace,
                spawner,
                log_dir=Path(log_dir),
                startup_timeout=timeout,
                venv=venv,
            )
            if process is not None:
                await process.stop(_STOP_TIMEOUT_S)
        if result.ok:
            stopped = {"url": None, "pid": None, "preview_id": None}
            output = result.output + "stopped again\n"
            return result.model_copy(update={**stopped, "output": output})
        return result

    if spec.command:
        argv = _argv(spec.command, python)
        header = f"$ {' '.join(spec.command)}\n"
    else:
        argv = [python, "-c", COMPILE_CHECK]
        header = "no smoke command was given: syntax-checking every *.py file\n"
    try:
        run = await spawner.run(argv, cwd=workspace, mounts=mounts, timeout=timeout)
    except SpawnError as exc:
        return DeployResult(ok=False, kind=spec.kind, output=_bounded(f"{header}{exc}\n"))
    body = run.output
    if body and not body.endswith("\n"):
        body += "\n"
    if run.timed_out:
        footer = f"timed out after {timeout:g}s; the process group was killed\n"
    else:
        footer = f"exit code {run.exit_code}\n"
    output = header + tail_text(body, max(OUTPUT_LIMIT - len(header) - len(footer), 0)) + footer
    return DeployResult(ok=run.ok, kind=spec.kind, output=output, usage=run_usage(run.usage))


async def start_preview(
    spec: RunSpec,
    workspace: Path,
    spawner: ProcessSpawner,
    *,
    log_dir: Path,
    startup_timeout: float = 30,
    venv: WorkspaceVenv | None = None,
) -> tuple[DeployResult, SpawnedProcess | None]:
    """Start a web app detached and wait until ``health_path`` answers 2xx.

    ``{port}`` in the command becomes a free 127.0.0.1 port, also given as ``PORT``. Its
    log goes to ``log_dir``. On success the app keeps running: the result has its url, pid
    and ``preview_id``, and the process is returned for the caller to stop; another
    process stops it by that id (``preview_record.stop_preview``; the record is written
    to ``log_dir``).
    If it exits, or does not answer 2xx within ``startup_timeout``, it is stopped and the
    result has ok=False and the tail of its log. With ``venv``, a leading ``python`` is the
    venv's interpreter.
    """
    mounts = venv_mounts(venv)
    if spec.kind != "web":
        raise PreviewError(f"start_preview needs a web RunSpec, got kind {spec.kind!r}")

    def failed(output: str) -> tuple[DeployResult, None]:
        return DeployResult(ok=False, kind="web", output=_bounded(output)), None

    if not spec.command:
        return failed("the web RunSpec has no command to start the app with\n")
    path = _health_path(spec.health_path)
    if path is None:
        return failed(f"health_path {spec.health_path!r} is not a plain URL path\n")

    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in _argv(spec.command, mounts.python)]
    log_path = log_dir / f"preview-{port}.log"
    header = f"$ {' '.join(argv)}\n"
    try:
        process = await spawner.start(
            argv, cwd=workspace, env={"PORT": str(port)}, mounts=mounts, log_path=log_path
        )
    except SpawnError as exc:
        return failed(f"{header}{exc}\n")

    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout
    last_status: int | None = None
    try:
        while True:
            if process.returncode is not None:
                reason = f"the app exited with code {process.returncode} before it was healthy"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = f" (last answer: HTTP {last_status})" if last_status else ""
                reason = f"no 2xx from {path} within {startup_timeout:g}s{seen}"
                break
            status = await probe_health(port, path, min(_PROBE_TIMEOUT_S, remaining))
            if status is not None and 200 <= status < 300:
                output = f"{header}{base_url}{path} answered HTTP {status}; log: {log_path}\n"
                record = write_record(log_dir, process, port=port, log_path=log_path)
                result = DeployResult(
                    ok=True,
                    kind="web",
                    url=f"{base_url}/",
                    pid=process.pid,
                    preview_id=record.id if record is not None else None,
                    output=output,
                )
                return result, process
            if status is not None:
                last_status = status
            await asyncio.sleep(_POLL_S)
    except BaseException:
        await process.stop(_STOP_TIMEOUT_S)
        raise

    await process.stop(_STOP_TIMEOUT_S)
    footer = f"{reason}; stopped it. Log tail ({log_path}):\n"
    log = _log_tail(log_path)
    return failed(
        header + footer + tail_text(log, max(OUTPUT_LIMIT - len(header) - len(footer) - 100, 0))
    )
