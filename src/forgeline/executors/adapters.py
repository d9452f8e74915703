"""Coding CLIs (aider, codex, claude) as coder back-ends behind one ``ToolAdapter`` protocol.

An adapter runs its CLI non-interactively in the workspace, through the ``ProcessSpawner``
it is given (argv list, no shell, a timeout, the spawner's scrubbed environment). The CLI
gets exactly the environment it needs on top of the spawner's allowlist: its API key
variables (only those that are set), ``PATH`` from the adapter's environment, and any
``extra_env``; no other secret of ours reaches it.

What the CLI did to the tree is turned into a change and the tree is put back:

1. before the run the workspace must be clean (``git status`` empty: commit first);
2. after it, the modified files are the difference against the pre-run HEAD (tracked
   files, even if the CLI committed despite being told not to) plus new untracked files,
   less the CLI's own scratch files (aider's ``.aider*`` histories and caches);
3. they become one ``DiffChange`` (``git diff --binary``), and the workspace is reset to
   the pre-run HEAD on the pre-run branch, new untracked files removed (ignored files such
   as ``.forgeline/`` are left alone).

So the CLI's work lands only through the patch engine (validated, rolled back on failure),
like any other back-end's. A non-zero exit, a timeout or a run that changed nothing gives
an ``AdapterResult`` with ``ok=False`` and an ``error`` saying which;
``AdapterResult.require_change()`` turns that into an ``AdapterError``. An adapter takes
``workspace.lock`` while the CLI runs: do not call it while holding that lock.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field

from forgeline.config import CoderConfig
from forgeline.core.events import Frozen
from forgeline.errors import ForgelineError, WorkspaceError
from forgeline.executors.patch import DiffChange
from forgeline.sandbox.spawner import ProcessResult, ProcessSpawner, SpawnError, tail_text
from forgeline.workspace.git import GitWorkspace, confined_path

__all__ = [
    "AdapterError",
    "AdapterRequest",
    "AdapterResult",
    "AiderAdapter",
    "ClaudeAdapter",
    "CliAdapter",
    "CodexAdapter",
    "ToolAdapter",
    "adapter_for",
    "default_adapters",
]

#: Characters of a CLI's output kept in a result.
OUTPUT_LIMIT = 20_000


class AdapterError(ForgelineError):
    """A coding CLI could not be run, or its run produced no usable change."""


class AdapterRequest(Frozen):
    prompt: str = Field(min_length=1, description="What the tool should do.")
    files: tuple[str, ...] = Field(
        default=(), description="Files to focus on (paths inside the workspace)."
    )
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds; None: the adapter's default."
    )


class AdapterResult(Frozen):
    tool: str
    ok: bool
    exit_code: int | None
    timed_out: bool = False
    output: str = ""
    files: tuple[str, ...] = ()
    change: DiffChange | None = None
    error: str | None = None
    duration_s: float = 0.0

    def require_change(self) -> DiffChange:
        """The change, or ``AdapterError`` saying why there is none."""
        if not self.ok or self.change is None:
            raise AdapterError(self.error or f"{self.tool} produced no change")
        return self.change


@runtime_checkable
class ToolAdapter(Protocol):
    """A coder back-end that edits the workspace with an external tool."""

    name: str

    async def execute(
        self, request: AdapterRequest, workspace: GitWorkspace, spawner: ProcessSpawner
    ) -> AdapterResult: ...

    def validate_config(self) -> list[str]:
        """What stops this adapter from working (empty: ready)."""
        ...

    def get_capabilities(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- base


class CliAdapter:
    """The shared machinery; a subclass names its CLI and builds its arguments.

    ``executable`` overrides the lookup on ``PATH`` (a name or a path); ``environ`` is where
    ``PATH`` and the API keys are read (default: this process's environment, read when
    needed); ``extra_env`` is passed to the CLI as given; ``requires_key=False`` is for a
    CLI that is logged in another way (``codex login``, ``claude`` with a subscription).
    """

    name: ClassVar[str]
    default_executable: ClassVar[str]
    #: API key variables this CLI reads; any one of them is enough.
    key_vars: ClassVar[tuple[str, ...]]
    #: Exit codes the CLI documents, for error messages.
    exit_codes: ClassVar[Mapping[int, str]] = {0: "success", 1: "error"}
    accepts_files: ClassVar[bool] = False
    #: Files the CLI writes for itself (histories, caches): never part of the change.
    scratch_files: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        executable: str | None = None,
        environ: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        model: str | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 900,
        requires_key: bool = True,
    ) -> None:
        self.executable = executable
        self._environ = environ
        self.extra_env = dict(extra_env or {})
        self.model = model
        self.extra_args = tuple(extra_args)
        self.timeout = timeout
        self.requires_key = requires_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(executable={self.resolve_executable()!r})"

    # -------------------------------------------------------------- configuration

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def resolve_executable(self) -> str | None:
        """The CLI's absolute path, or None when it cannot be found."""
        name = self.executable or self.default_executable
        return shutil.which(name, path=self.environ.get("PATH"))

    def present_keys(self) -> list[str]:
        return [var for var in self.key_vars if self.environ.get(var)]

    def child_env(self) -> dict[str, str]:
        """What the CLI gets on top of the spawner's allowlist."""
        env = {var: self.environ[var] for var in self.present_keys()}
        if "PATH" in self.environ:
            env["PATH"] = self.environ["PATH"]
        env.update(self.extra_env)
        return env

    def validate_config(self) -> list[str]:
        problems: list[str] = []
        if self.resolve_executable() is None:
            name = self.executable or self.default_executable
            problems.append(
                f"{self.name}: executable {name!r} not found on PATH; install it or pass "
                "executable= with its path"
            )
        if self.requires_key and not self.present_keys():
            problems.append(
                f"{self.name}: no API key; set {' or '.join(self.key_vars)} "
                "(or log the CLI in and pass requires_key=False)"
            )
        return problems

    def get_capabilities(self) -> dict[str, Any]:
        return {
            "tool": self.name,
            "executable": self.resolve_executable(),
            "non_interactive": True,
            "edits_files": True,
            "accepts_files": self.accepts_files,
            "model": self.model,
            "key_vars": list(self.key_vars),
            "keys_present": self.present_keys(),
            "exit_codes": {str(code): meaning for code, meaning in self.exit_codes.items()},
            "ready": not self.validate_config(),
        }

    def arguments(self, request: AdapterRequest) -> list[str]:
        """The CLI's arguments (after the executable) for one non-interactive run."""
        raise NotImplementedError

    # -------------------------------------------------------------- running

    async def execute(
        self, request: AdapterRequest, workspace: GitWorkspace, spawner: ProcessSpawner
    ) -> AdapterResult:
        executable = self.resolve_executable()
        if executable is None:
            raise AdapterError(self.validate_config()[0])
        for path in request.files:
            try:
                confined_path(workspace.path, path)
            except WorkspaceError as exc:
                raise AdapterError(f"{self.name}: refused file {path!r}: {exc}") from exc
        argv = [executable, *self.arguments(request)]
        timeout = request.timeout or self.timeout
        async with workspace.lock:
            try:
                return await self._run(argv, timeout, workspace, spawner)
            except WorkspaceError as exc:
                raise AdapterError(f"{self.name}: {exc}") from exc

    async def _run(
        self, argv: list[str], timeout: float, workspace: GitWorkspace, spawner: ProcessSpawner
    ) -> AdapterResult:
        dirty = await workspace.dirty_files()
        if dirty:
            raise AdapterError(
                f"{self.name}: the workspace has uncommitted changes "
                f"({', '.join(dirty[:5])}); commit them first, so the tool's edits can be "
                "told apart"
            )
        head = await workspace.head()
        branch = await workspace.current_branch()
        try:
            try:
                result = await spawner.run(
                    argv,
                    cwd=workspace.path,
                    env=self.child_env(),
                    timeout=timeout,
                    max_output=OUTPUT_LIMIT,
                )
            except SpawnError as exc:
                raise AdapterError(f"{self.name} could not be started: {exc}") from exc
            files, diff = await _collect_change(workspace, head, self.scratch_files)
        finally:
            await workspace.reset_to(branch, head)
        return self._result(result, files, diff)

    def _result(self, result: ProcessResult, files: list[str], diff: str) -> AdapterResult:
        output = tail_text(result.output, OUTPUT_LIMIT)
        error: str | None = None
        if result.timed_out:
            error = f"{self.name} timed out after {result.duration_s:.0f}s and was stopped"
        elif result.exit_code != 0:
            code = result.exit_code
            if code is None:
                meaning = "it could not be reaped"
            elif code < 0:
                meaning = f"killed by signal {-code}"
            else:
                meaning = self.exit_codes.get(code, "unexpected exit code")
            error = (
                f"{self.name} exited with code {result.exit_code} ({meaning}): "
                f"{tail_text(output.strip(), 1_000) or '(no output)'}"
            )
        elif not files:
            error = f"{self.name} finished but changed no file"
        change = (
            DiffChange(summary=f"{self.name}: {len(files)} file(s)", diff=diff) if files else None
        )
        return AdapterResult(
            tool=self.name,
            ok=error is None,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            output=output,
            files=tuple(files),
            change=change if error is None else None,
            error=error,
            duration_s=result.duration_s,
        )


async def _collect_change(
    workspace: GitWorkspace, base: str, scratch: Sequence[str] = ()
) -> tuple[list[str], str]:
    """The files changed since ``base`` (tracked and new, less ``scratch`` patterns) and
    one diff holding them all."""

    def wanted(path: str) -> bool:
        return not any(fnmatch.fnmatch(path.split("/", 1)[0], pattern) for pattern in scratch)

    tracked = [p for p in (await workspace.git("diff", "--name-only", "-z", base)).split("\0") if p]
    status = await workspace.status()
    untracked = sorted(p for p, code in status.items() if code == "??" and wanted(p))
    files = sorted(set(tracked) | set(untracked))
    if not files:
        return [], ""
    parts = (
        [await workspace.git("diff", "--binary", "--no-color", base, "--", *tracked)]
        if tracked
        else []
    )
    for path in untracked:
        # exits 1 when the files differ, which they do
        parts.append(
            await workspace.git(
                "diff", "--no-index", "--binary", "--no-color", "--", "/dev/null", path, check=False
            )
        )
    return files, "".join(parts)


# --------------------------------------------------------------------------- the CLIs


class AiderAdapter(CliAdapter):
    """``aider --yes-always --no-auto-commits --message=<prompt> [files...]``.

    ``--no-gitignore`` keeps aider from adding ``.aider*`` to ``.gitignore``; the prompt is
    passed as ``--message=<prompt>`` so a prompt that starts with ``-`` stays a value.
    """

    name = "aider"
    default_executable = "aider"
    key_vars = (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENROUTER_API_KEY",
        "GEMINI_API_KEY",
        "DEEPSEEK_API_KEY",
    )
    accepts_files = True
    scratch_files = (".aider*",)

    def arguments(self, request: AdapterRequest) -> list[str]:
        args = [
            "--yes-always",
            "--no-auto-commits",
            "--no-gitignore",
            "--no-check-update",
            "--no-pretty",
            "--no-stream",
        ]
        if self.model:
            args.append(f"--model={self.model}")
        args += [*self.extra_args, f"--message={request.prompt}"]
        return [*args, "--", *request.files] if request.files else args


class CodexAdapter(CliAdapter):
    """``codex exec --sandbox workspace-write --color never -- <prompt>``.

    ``--sandbox workspace-write`` is what ``--full-auto`` stands for (newer releases warn
    about the older flag); ``codex exec`` never asks for approval.
    """

    name = "codex"
    default_executable = "codex"
    key_vars = ("OPENAI_API_KEY", "CODEX_API_KEY")

    def arguments(self, request: AdapterRequest) -> list[str]:
        args = ["exec", "--sandbox", "workspace-write", "--color", "never"]
        if self.model:
            args += ["--model", self.model]
        return [*args, *self.extra_args, "--", _with_files(request)]


class ClaudeAdapter(CliAdapter):
    """``claude -p --permission-mode acceptEdits --output-format text -- <prompt>``."""

    name = "claude"
    default_executable = "claude"
    key_vars = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")

    def arguments(self, request: AdapterRequest) -> list[str]:
        args = ["-p", "--permission-mode", "acceptEdits", "--output-format", "text"]
        if self.model:
            args += ["--model", self.model]
        return [*args, *self.extra_args, "--", _with_files(request)]


def _with_files(request: AdapterRequest) -> str:
    """The prompt, naming the files to focus on for CLIs that take no file arguments."""
    if not request.files:
        return request.prompt
    return f"{request.prompt}\n\nFocus on these files: {', '.join(request.files)}"


ADAPTERS: dict[str, type[CliAdapter]] = {
    cls.name: cls for cls in (AiderAdapter, CodexAdapter, ClaudeAdapter)
}


def default_adapters(**options: Any) -> dict[str, CliAdapter]:
    """One adapter per known CLI, each built with ``options``."""
    return {name: cls(**options) for name, cls in ADAPTERS.items()}


def adapter_for(config: CoderConfig, environ: Mapping[str, str] | None = None) -> CliAdapter:
    """The adapter ``[coder]`` names (``backend`` other than ``llm``), configured from it.

    ``environ`` (default: this process's environment) supplies ``PATH`` and the API key
    variables; ``config.env`` is added for the CLI only. Neither is ever part of an error
    message or of ``repr``.
    """
    cls = ADAPTERS.get(config.backend)
    if cls is None:
        raise AdapterError(
            f"coder back-end {config.backend!r} is not a coding CLI "
            f"(known: {', '.join(sorted(ADAPTERS))})"
        )
    return cls(
        executable=config.executable,
        environ=environ,
        extra_env={name: value.get_secret_value() for name, value in config.env.items()},
        model=config.model,
        extra_args=config.args,
        timeout=config.timeout,
        requires_key=config.requires_key,
    )
