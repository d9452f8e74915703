"""One request, two ways: the full pipeline and a single shot, each judged by hidden tests.

- **pipeline**: ``forgeline run REQUEST`` in a fresh temporary git workspace with its own
  SQLite store, as a process of its own. Afterwards the store gives the task's status, its
  fixer rounds (``fix.attempt`` events, ``attempts_from_log``) and its tokens (the
  ``llm.usage`` events, ``usage_rows``: what ``forgeline usage`` shows).
- **single shot**: ``python -m benchmarks.agents.single_shot``: the same model asked once
  for all the files, written into another fresh git workspace.

Then the request's hidden tests are copied into the finished workspace (the pipeline's
task worktree) and run there with pytest, in a subprocess through forgeline's spawner (the
bubblewrap sandbox, or plain processes where it cannot work) and with the task's venv, the
interpreter forgeline's tester uses (for a request that needs packages, synced to what the
workspace declares plus the request's packages). A request passes when every hidden test
passes. The hidden tests run whatever the task's outcome: a failed task may still have
left working code, and a "completed" one may not do what was asked.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.agents.suite import BenchRequest
from forgeline.config import PackagesConfig
from forgeline.core.events import task_stream, usage_stream
from forgeline.core.fixes import attempts_from_log, run_from_log
from forgeline.core.task import fold
from forgeline.errors import ForgelineError
from forgeline.llm.metered import usage_rows
from forgeline.runs.testrun import parse_junit, pytest_command
from forgeline.sandbox.select import UnsafeSpawnerWarning, choose_spawner
from forgeline.store.sqlite import SQLiteEventStore
from forgeline.workspace.declared import Declaration, read_declaration
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.layout import Workspaces
from forgeline.workspace.sync import PackageSync
from forgeline.workspace.venv import workspace_venv

ROOT = Path(__file__).resolve().parents[2]
#: Seconds to let a stopped run record what it was doing before it is killed.
KILL_GRACE = 20.0

ArmName = Literal["single_shot", "pipeline"]


@dataclass
class Options:
    """What every run of one benchmark shares."""

    model: str | None = None
    """``provider:model`` for every role (``FORGELINE_MODELS__DEFAULT``); None: forgeline's
    own choice (the config file's, else the offline local model)."""
    config: Path | None = None
    candidates: int | None = None
    model_timeout: float | None = None
    """forgeline's ``model_timeout`` (``FORGELINE_MODEL_TIMEOUT``); None: its default."""
    timeout: float = 1800.0
    """Seconds per run (pipeline or single shot) before its process group is stopped."""
    test_timeout: float = 120.0
    """Seconds for the hidden tests of one workspace."""
    mode: str | None = None
    max_fix_rounds: int | None = None
    unsafe_no_sandbox: bool = False
    keep: bool = False

    def env(self) -> dict[str, str]:
        """The children's environment: ours, the model and candidates, and the repository
        on the import path (``function:`` models from ``benchmarks`` or ``tests``)."""
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
        if self.model:
            env["FORGELINE_MODELS__DEFAULT"] = self.model
        if self.candidates is not None:
            env["FORGELINE_CANDIDATES"] = str(self.candidates)
        if self.model_timeout is not None:
            env["FORGELINE_MODEL_TIMEOUT"] = f"{self.model_timeout:g}"
        env.setdefault("COLUMNS", "160")
        return env


@dataclass
class HiddenResult:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    timed_out: bool = False
    note: str = ""

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def ok(self) -> bool:
        return self.passed > 0 and self.failed == 0 and self.errors == 0 and not self.timed_out


@dataclass
class ArmResult:
    """One way of building one request."""

    arm: ArmName
    status: str
    """pipeline: the task's status (completed, failed, ...) or timeout; single shot:
    answered, empty (no usable file), invalid (no valid answer), error or timeout."""
    passed: bool = False
    tests_passed: int = 0
    tests_total: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cache_hits: int = 0
    wall_s: float = 0.0
    fix_rounds: int = 0
    """Fixer rounds (``fix.attempt`` events); always 0 for a single shot."""
    fixed: bool = False
    """A fixer round made the task's own tests pass."""
    files: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class RequestResult:
    name: str
    kind: str
    single_shot: ArmResult | None = None
    pipeline: ArmResult | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for arm in (self.single_shot, self.pipeline):
            if arm is not None:
                out[arm.arm] = asdict(arm) | {"tokens": arm.tokens}
        return out


# ------------------------------------------------------------------------ processes


@dataclass
class Finished:
    exit_code: int | None
    timed_out: bool
    wall_s: float


def run_process(
    argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float, log: Path
) -> Finished:
    """Run ``argv`` in a session of its own with its output in ``log``; past ``timeout``
    its group gets SIGTERM (forgeline records the work in flight), then SIGKILL."""
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code: int | None = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _stop(process)
        except BaseException:  # Ctrl-C or SIGTERM: the child has a session of its own
            _stop(process)
            raise
    return Finished(code, timed_out, time.perf_counter() - started)


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


def _tail(path: Path, chars: int = 400) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


# ------------------------------------------------------------------------ hidden tests


async def run_hidden(
    request: BenchRequest, workspace: Path, *, unsafe: bool, timeout: float
) -> HiddenResult:
    """Copy the request's hidden tests into ``workspace`` and run just them there."""
    if not workspace.is_dir():
        return HiddenResult(errors=1, note="no workspace to test")
    target = workspace / request.hidden_name
    shutil.copyfile(request.hidden_tests, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSpawnerWarning)  # said once, by the caller
        spawner = choose_spawner(require_sandbox=False, allow_unsafe=unsafe)
    venv = await workspace_venv(workspace)
    if request.packages:  # what the hidden tests import, with what the workspace declares
        try:
            declared = read_declaration(workspace)
        except ForgelineError:
            declared = Declaration()
        try:
            await PackageSync(PackagesConfig(), spawner).sync(
                venv, declared, cwd=workspace, requested=request.packages
            )
        except ForgelineError as exc:
            return HiddenResult(errors=1, note=f"the packages could not be installed: {exc}")
    with tempfile.TemporaryDirectory(prefix="forgeline-hidden-") as tmp:
        report = Path(tmp) / "junit.xml"
        argv = pytest_command(
            workspace, Path(tmp), str(venv.python), "-q", "--junitxml", str(report), target.name
        )
        result = await spawner.run(argv, cwd=workspace, mounts=venv.mounts(), timeout=timeout)
        text = report.read_text(errors="replace") if report.is_file() else ""
    summary = parse_junit(text, workspace)
    hidden = HiddenResult(summary.passed, summary.failed, summary.errors)
    if result.timed_out:
        hidden.timed_out = True
        hidden.note = f"hidden tests timed out after {timeout:g}s"
    elif summary.problem:
        hidden.note = f"{summary.problem}: {' '.join((result.stderr + result.stdout).split())}"
        hidden.note = hidden.note[-400:]
    return hidden


def _judge(arm: ArmResult, hidden: HiddenResult) -> None:
    arm.passed = hidden.ok
    arm.tests_passed = hidden.passed
    arm.tests_total = hidden.total
    if hidden.note:
        arm.note = "; ".join(n for n in (arm.note, hidden.note) if n)


# ------------------------------------------------------------------------ the two arms


def run_pipeline(request: BenchRequest, root: Path, options: Options) -> ArmResult:
    """``forgeline run`` in ``root/pipeline`` (a new repository and store), then the
    hidden tests in the task's worktree."""
    base = root / "pipeline"
    workspace = base / "ws"
    store = base / "forgeline.db"
    base.mkdir(parents=True)
    argv = [sys.executable, "-m", "forgeline", "run", request.request]
    argv += ["--workspace", str(workspace), "--store", str(store)]
    if options.config is not None:
        argv += ["--config", str(options.config)]
    if options.mode is not None:
        argv += ["--mode", options.mode]
    if options.max_fix_rounds is not None:
        argv += ["--max-fix-rounds", str(options.max_fix_rounds)]
    if options.unsafe_no_sandbox:
        argv.append("--unsafe-no-sandbox")
    log = base / "forgeline-run.log"
    done = run_process(argv, env=options.env(), cwd=base, timeout=options.timeout, log=log)
    arm, worktree = asyncio.run(_read_task(store, done))
    if worktree is None:
        arm.note = f"no task was recorded (exit {done.exit_code}): {_tail(log)}"
        return arm
    arm.files = _project_files(worktree) if worktree.is_dir() else []
    hidden = asyncio.run(
        run_hidden(
            request, worktree, unsafe=options.unsafe_no_sandbox, timeout=options.test_timeout
        )
    )
    _judge(arm, hidden)
    return arm


async def _read_task(store_path: Path, done: Finished) -> tuple[ArmResult, Path | None]:
    """The pipeline arm's figures from the run's store (its only task), and the task's
    worktree (None when no task was recorded)."""
    arm = ArmResult("pipeline", "timeout" if done.timed_out else "error")
    arm.wall_s = round(done.wall_s, 2)
    if not store_path.is_file():
        return arm, None
    store = SQLiteEventStore(store_path)
    await store.open()
    try:
        rows = await store.tasks()
        if not rows:
            return arm, None
        task_id = rows[0].id
        events = await store.read_stream(task_stream(task_id))
        usage = usage_rows(task_id, await store.read_stream(usage_stream(task_id)))
    finally:
        await store.close()
    state = fold(task_id, events)
    arm.status = "timeout" if done.timed_out and not state.terminal else state.status
    if state.failure:
        arm.note = " ".join(state.failure.split())[:300]
    if done.timed_out:
        stopped = f"stopped after the timeout ({state.status})"
        arm.note = f"{stopped}; {arm.note}" if arm.note else stopped
    arm.fix_rounds = len(attempts_from_log(events))
    fixes = run_from_log(events)
    arm.fixed = fixes is not None and fixes.fixed
    if usage:
        total = usage[-1]
        arm.input_tokens = total.input_tokens
        arm.output_tokens = total.output_tokens
        arm.calls = total.calls
        arm.cache_hits = total.cache_hits
    # the run's workspace is ``<base>/ws``: the workspaces root is ``<base>``
    return arm, Workspaces(store_path.parent).worktree(state).path


def run_single_shot(request: BenchRequest, root: Path, options: Options) -> ArmResult:
    """One call for all the files in ``root/single_shot``, then the hidden tests there."""
    base = root / "single_shot"
    workspace = base / "ws"
    base.mkdir(parents=True)
    request_file = base / "request.txt"
    request_file.write_text(request.request, encoding="utf-8")
    out = base / "result.json"
    argv = [sys.executable, "-m", "benchmarks.agents.single_shot"]
    argv += ["--workspace", str(workspace), "--request-file", str(request_file)]
    argv += ["--out", str(out)]
    if options.config is not None:
        argv += ["--config", str(options.config)]
    log = base / "single-shot.log"
    done = run_process(argv, env=options.env(), cwd=base, timeout=options.timeout, log=log)
    arm = ArmResult("single_shot", "error", wall_s=round(done.wall_s, 2))
    data: dict[str, Any] = {}
    if out.is_file():
        data = json.loads(out.read_text())
    if done.timed_out:
        arm.status = "timeout"
        arm.note = f"stopped after {options.timeout:g}s"
    elif not data:
        arm.note = f"no result (exit {done.exit_code}): {_tail(log)}"
    else:
        arm.status = str(data.get("status", "error"))
        arm.note = " ".join(str(data.get("error", "")).split())[:300]
        arm.input_tokens = int(data.get("input_tokens", 0))
        arm.output_tokens = int(data.get("output_tokens", 0))
        arm.calls = int(data.get("calls", 0))
        arm.files = list(data.get("files", []))
    if (workspace / ".git").exists():
        hidden = asyncio.run(
            run_hidden(
                request, workspace, unsafe=options.unsafe_no_sandbox, timeout=options.test_timeout
            )
        )
        _judge(arm, hidden)
    return arm


def _project_files(workspace: Path) -> list[str]:
    out = asyncio.run(GitWorkspace(workspace).git("ls-files", check=False))
    return [line for line in out.splitlines() if line]


def run_request(
    request: BenchRequest, root: Path, options: Options, arms: tuple[ArmName, ...]
) -> RequestResult:
    """Both arms of one request, in ``root/<name>`` (removed afterwards unless ``keep``)."""
    where = root / request.name
    where.mkdir(parents=True)
    result = RequestResult(request.name, request.kind)
    try:
        if "single_shot" in arms:
            result.single_shot = run_single_shot(request, where, options)
        if "pipeline" in arms:
            result.pipeline = run_pipeline(request, where, options)
    finally:
        if not options.keep:
            shutil.rmtree(where, ignore_errors=True)
    return result
