"""The terminal tool: agents run commands in their workspace, within an allowlist.

A command is an argv list, never a shell line. Before it runs it is checked against the
project's rules (``[terminal]`` in forgeline.toml, ``config.TerminalConfig``): a ``deny``
rule that matches refuses it whatever else allows it; otherwise the first ``allow`` rule
that matches lets it run; a command no rule allows is refused. With ``confine_paths`` an
argument that names a path outside the workspace is refused too. A refusal names the
rule that refused it (or says that no rule allows the command) and runs nothing.

An allowed command runs through the ``ProcessSpawner`` (the sandbox, unless forgeline was
started with ``--unsafe-no-sandbox``) with the workspace as its working directory. With
the workspace's venv (``workspace.venv``), ``python``/``python3`` are the venv's
interpreter, ``pytest`` and ``pip`` its modules, and programs the venv installed (``ruff``,
``mypy``) come from its ``bin``. ``pip install`` goes through the package policy and the
checked install path (``workspace.sync``, with ``[packages]``): requirement specifiers
only, wheels only, downloaded by forgeline's own pip and installed offline in the sandbox
(docs/security.md). The venv then holds the project's declared packages plus the ones
asked for, until its next sync (before the tests, the preview, a change's validation)
makes it exactly the declared set again: what the code needs must be declared. ``git`` in a task
worktree sees the repository's git data read-only, with its ``config`` hidden (binds that
the sandbox honours; a plain ``LocalSpawner`` sees the real files).

Every run, allowed or refused, is kept as a ``ToolCommand`` (argv, rule, exit code,
resource usage, output tail). ``command_events`` turns them into ``tool.command`` events
for the stage to record together with its result, so a crash never leaves half a record
(and a re-run records its own commands). The allowlist keeps an agent to what it needs;
it is not the security boundary. The sandbox is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from forgeline.config import PackagesConfig, TerminalConfig
from forgeline.core.events import NewEvent, PackagesSynced, ToolCommand
from forgeline.errors import ForgelineError
from forgeline.runs.usage import run_usage
from forgeline.sandbox.spawner import (
    Bind,
    ProcessResult,
    ProcessSpawner,
    ResourceUsage,
    SpawnError,
    tail_text,
)
from forgeline.workspace.declared import PackageError, parse_install_args, read_declaration
from forgeline.workspace.packages import PackageRefused
from forgeline.workspace.sync import PackageSync
from forgeline.workspace.venv import VenvError, WorkspaceVenv, venv_mounts

__all__ = [
    "CONFINE_RULE",
    "INSTALL_RULE",
    "CommandOutcome",
    "Rule",
    "Terminal",
    "TerminalError",
    "Verdict",
    "check_command",
    "command_events",
]

#: ``ToolCommand.rule`` of a command refused because an argument leaves the workspace.
CONFINE_RULE = "confine_paths"
#: ``ToolCommand.rule`` of an install refused by the install checks or settings.
INSTALL_RULE = "installs"
#: Environment of every terminal run: no pagers, no prompts, no optional git locks, no
#: system git configuration.
TERMINAL_ENV = {
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "TERM": "dumb",
}
_PYTHON_NAMES = ("python", "python3")


class TerminalError(ForgelineError):
    """A terminal call that is not a command at all (a string, an empty list)."""


# --------------------------------------------------------------------------- rules


def _match(words: Sequence[str], args: Sequence[str]) -> bool:
    """Whether ``args`` starts with what ``words`` describe (``...``: any arguments)."""
    if not words:
        return True
    head = words[0]
    if head == "...":
        return any(_match(words[1:], args[i:]) for i in range(len(args) + 1))
    return bool(args) and fnmatchcase(args[0], head) and _match(words[1:], args[1:])


@dataclass(frozen=True)
class Rule:
    """One allow or deny rule: its text as configured and its words."""

    text: str
    words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Rule:
        return cls(text, tuple(shlex.split(text)))

    def matches(self, argv: Sequence[str]) -> bool:
        """The program as given (a word without ``/`` never matches a path), then the
        arguments, as a prefix; ``...`` is any number of arguments."""
        if not argv or not self.words:
            return False
        program, *rest = self.words
        if "/" in argv[0] and "/" not in program:
            return False
        return fnmatchcase(argv[0], program) and _match(rest, argv[1:])


@dataclass(frozen=True)
class Verdict:
    """Whether a command may run, the rule that decided (None: no rule allows it), why."""

    allowed: bool
    rule: str | None
    reason: str


def _outside(arg: str, workspace: Path) -> bool:
    value = arg.partition("=")[2] if arg.startswith("-") and "=" in arg else arg
    if not value or "\0" in value:
        return False
    if not value.startswith("/") and ".." not in Path(value).parts:
        candidate = workspace / value
        if not candidate.is_symlink():
            return False  # a plain relative name: inside unless a symlink leads out
    target = (workspace / value).resolve()
    return target != workspace and not target.is_relative_to(workspace)


def check_command(
    argv: Sequence[str], config: TerminalConfig, workspace: Path | None = None
) -> Verdict:
    """Whether ``config``'s rules let ``argv`` run (in ``workspace``, for path checks)."""
    args = list(argv)
    for text in config.deny_rules:
        if Rule.parse(text).matches(args):
            return Verdict(False, text, f"denied by the rule {text!r}")
    allowed_by: str | None = None
    for text in config.allow_rules:
        if Rule.parse(text).matches(args):
            allowed_by = text
            break
    if allowed_by is None:
        hint = ""
        if args and any(ch.isspace() for ch in args[0]):
            hint = f" (a command is a list of arguments: {shlex.split(args[0])!r}, not one string)"
        return Verdict(
            False, None, f"no rule allows {shlex.join(args[:3])!r}{hint}; see [terminal] allow"
        )
    if config.confine_paths and workspace is not None:
        root = workspace.resolve()
        for arg in args:
            if _outside(arg, root):
                return Verdict(
                    False,
                    CONFINE_RULE,
                    f"argument {arg!r} is a path outside the workspace (confine_paths)",
                )
    return Verdict(True, allowed_by, f"allowed by the rule {allowed_by!r}")


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class CommandOutcome:
    """What one terminal call did. A refused command has ``allowed`` False and ran nothing;
    ``ran`` is the argv that really ran (the venv's interpreter in place of ``python``)."""

    argv: tuple[str, ...]
    allowed: bool
    rule: str | None
    reason: str
    exit_code: int | None = None
    timed_out: bool = False
    output: str = ""
    usage: ResourceUsage | None = None
    ran: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.allowed and self.exit_code == 0 and not self.timed_out

    def record(self) -> ToolCommand:
        return ToolCommand(
            argv=self.argv,
            denied=not self.allowed,
            rule=self.rule,
            exit_code=self.exit_code,
            timed_out=self.timed_out,
            usage=run_usage(self.usage),
            output=self.output if self.allowed else self.reason,
        )

    def answer(self) -> str:
        """The outcome as text, for a model."""
        command = shlex.join(self.argv)
        if not self.allowed:
            return f"$ {command}\nrefused: {self.reason}\n"
        status = "timed out (killed)" if self.timed_out else f"exit code {self.exit_code}"
        body = self.output if not self.output or self.output.endswith("\n") else self.output + "\n"
        return f"$ {command}\n{body}[{status}]\n"


def command_events(
    commands: Sequence[ToolCommand],
    *,
    stream_id: str,
    correlation_id: str,
    causation_id: str | None,
    actor: str,
    created_at: datetime,
) -> list[NewEvent]:
    """``tool.command`` events for ``commands``, in order: the first caused by
    ``causation_id`` (the stage's trigger), each next one by the one before it (the store
    keeps one event of a type per cause)."""
    events: list[NewEvent] = []
    cause = causation_id
    for command in commands:
        event = NewEvent(
            stream_id=stream_id,
            data=command,
            correlation_id=correlation_id,
            causation_id=cause,
            actor=actor,
            created_at=created_at,
        )
        events.append(event)
        cause = event.id
    return events


# --------------------------------------------------------------------------- the tool


#: git settings a sandboxed git keeps from the repository's config; the rest (remotes,
#: credential helpers, hooks paths, aliases, external diff drivers) stays hidden.
_GIT_KEEP = r"^(core\.repositoryformatversion|extensions\..*)$"


def _sanitized_git_config(config: Path, dest: Path) -> Path:
    """Write the parts of ``config`` git cannot do without (the repository format and its
    extensions) to ``dest``; read by forgeline's own git on the host."""
    try:
        done = subprocess.run(
            ["git", "config", "--file", str(config), "--get-regexp", _GIT_KEEP],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        lines = done.stdout.splitlines() if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        lines = []
    sections: dict[str, list[str]] = {}
    for line in lines:
        key, _, value = line.partition(" ")
        section, _, name = key.partition(".")
        if section and name and "\n" not in value:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            sections.setdefault(section, []).append(f'\t{name} = "{escaped}"\n')
    text = "".join(f"[{section}]\n" + "".join(items) for section, items in sections.items())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, dest)
    return dest


def _git_binds(workspace: Path) -> tuple[Bind, ...]:
    """For a worktree (``.git`` is a file naming its git dir): the repository's common git
    dir read-only, its ``config`` replaced by a sanitized copy (no remotes, credential
    helpers, aliases or diff drivers)."""
    dotgit = workspace / ".git"
    if not dotgit.is_file():
        return ()
    try:
        line = dotgit.read_text(errors="replace").strip()
    except OSError:
        return ()
    if not line.startswith("gitdir:"):
        return ()
    gitdir = (workspace / line.removeprefix("gitdir:").strip()).resolve()
    common = gitdir
    with contextlib.suppress(OSError):
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    if not common.is_dir():
        return ()
    binds = [Bind(common)]
    if common != gitdir and not gitdir.is_relative_to(common):
        binds.append(Bind(gitdir))
    config = common / "config"
    if config.is_file():
        try:
            clean = _sanitized_git_config(config, common.parent / ".forgeline" / "git-config")
        except OSError:
            return ()  # cannot hide the config: git gets no repository rather than it
        binds.append(Bind(clean, dest=config))
    return tuple(binds)


class Terminal:
    """Runs allowed commands in ``workspace`` through ``spawner`` (see the module doc).

    ``venv``: the task's venv (``workspace_venv``); without one, ``python`` is forgeline's
    own interpreter and installs are refused. ``packages``: the package policy and sources
    installs go through (``[packages]``). ``commands`` keeps every call's ``ToolCommand``
    for ``command_events``.
    """

    def __init__(
        self,
        workspace: Path,
        spawner: ProcessSpawner,
        config: TerminalConfig | None = None,
        *,
        venv: WorkspaceVenv | None = None,
        packages: PackagesConfig | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        self.spawner = spawner
        self.config = config if config is not None else TerminalConfig()
        self.packages = packages if packages is not None else PackagesConfig()
        self.venv = venv
        self.mounts = venv_mounts(venv)
        self.commands: list[ToolCommand] = []

    def check(self, argv: Sequence[str]) -> Verdict:
        return check_command(argv, self.config, self.workspace)

    @property
    def python(self) -> str:
        return self.mounts.python

    def resolve(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs for ``argv``: the venv's interpreter, modules and programs."""
        program, *rest = argv
        if program in _PYTHON_NAMES:
            return [self.python, *rest]
        if program in ("pytest", "pip"):
            return [self.python, "-m", program, *rest]
        if self.venv is not None and "/" not in program:
            installed = self.venv.path / "bin" / program
            if installed.is_file():
                return [str(installed), *rest]
        return [program, *rest]

    @staticmethod
    def _install_args(argv: Sequence[str]) -> list[str] | None:
        """The arguments after ``pip install`` / ``python -m pip install``, else None."""
        args = list(argv)
        if args[:2] == ["pip", "install"]:
            return args[2:]
        if len(args) >= 4 and args[0] in _PYTHON_NAMES and args[1:4] == ["-m", "pip", "install"]:
            return args[4:]
        return None

    async def run(self, argv: Sequence[str]) -> CommandOutcome:
        """Check ``argv`` and run it if allowed; the outcome is also kept in ``commands``."""
        if isinstance(argv, str | bytes):
            raise TerminalError(
                f"a command is a list of arguments, never a shell string: got {argv!r}"
            )
        args = tuple(argv)
        if not args or not all(isinstance(arg, str) for arg in args):
            raise TerminalError(f"a command is a non-empty list of strings, got {args!r}")
        verdict = self.check(args)
        if not verdict.allowed:
            outcome = CommandOutcome(args, False, verdict.rule, verdict.reason)
        elif (install := self._install_args(args)) is not None:
            outcome = await self._install(args, install, verdict)
        else:
            outcome = await self._run(args, verdict)
        self.commands.append(outcome.record())
        return outcome

    async def _run(self, args: tuple[str, ...], verdict: Verdict) -> CommandOutcome:
        ran = self.resolve(args)
        mounts = self.mounts
        if args[0] == "git":
            mounts = mounts.with_binds(*await asyncio.to_thread(_git_binds, self.workspace))
        try:
            result = await self.spawner.run(
                ran,
                cwd=self.workspace,
                env=TERMINAL_ENV,
                mounts=mounts,
                timeout=self.config.timeout,
            )
        except SpawnError as exc:
            return CommandOutcome(
                args,
                True,
                verdict.rule,
                verdict.reason,
                exit_code=127,
                output=f"{exc}\n",
                ran=tuple(ran),
            )
        return self._outcome(args, verdict, result, ran)

    def _outcome(
        self,
        args: tuple[str, ...],
        verdict: Verdict,
        result: ProcessResult,
        ran: Sequence[str],
        prefix: str = "",
    ) -> CommandOutcome:
        return CommandOutcome(
            argv=args,
            allowed=True,
            rule=verdict.rule,
            reason=verdict.reason,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            output=tail_text(prefix + result.output, self.config.output_chars),
            usage=result.usage,
            ran=tuple(ran),
        )

    async def _install(
        self, args: tuple[str, ...], install: list[str], verdict: Verdict
    ) -> CommandOutcome:
        def refused(reason: str) -> CommandOutcome:
            return CommandOutcome(args, False, INSTALL_RULE, reason)

        if not self.config.installs:
            return refused("installs are turned off ([terminal] installs = false)")
        if self.venv is None:
            return refused("installs need the workspace's venv (workspace_venv = true)")
        try:
            request = parse_install_args(install, self.workspace)
        except PackageError as exc:
            return refused(str(exc))
        installer = PackageSync(self.packages, self.spawner)
        try:
            synced = await installer.sync(
                self.venv,
                read_declaration(self.workspace),
                cwd=self.workspace,
                requested=request.requirements,
                pre="--pre" in request.flags,
            )
        except PackageRefused as exc:
            return CommandOutcome(args, False, f"[packages] {exc.rule}", str(exc))
        except (PackageError, VenvError, SpawnError) as exc:
            return CommandOutcome(
                args, True, verdict.rule, verdict.reason, exit_code=1, output=f"{exc}\n"
            )
        return CommandOutcome(
            argv=args,
            allowed=True,
            rule=verdict.rule,
            reason=verdict.reason,
            exit_code=0,
            output=tail_text(
                _installed_text(synced, request.requirements), self.config.output_chars
            ),
            usage=installer.last_run.usage if installer.last_run is not None else None,
        )

    def events(
        self,
        *,
        stream_id: str,
        correlation_id: str,
        causation_id: str | None,
        actor: str,
        created_at: datetime,
    ) -> list[NewEvent]:
        """``command_events`` of every command so far."""
        return command_events(
            self.commands,
            stream_id=stream_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            actor=actor,
            created_at=created_at,
        )

    def toolset(self) -> FunctionToolset[Any]:
        """A pydantic-ai toolset with one tool, ``run_command(argv)``."""

        async def run_command(argv: list[str]) -> str:
            """Run a command in the workspace (sandboxed) and get its output and exit code.

            Only allowlisted commands run (python, pytest, pip install, ls, cat, grep,
            git status/diff/log, ...); a refused one says which rule refused it.

            Args:
                argv: The command as a list of arguments, e.g. ["pytest", "-q"]; never a
                    shell string.
            """
            try:
                return (await self.run(argv)).answer()
            except TerminalError as exc:
                return f"error: {exc}\n"

        return FunctionToolset([run_command])


def _installed_text(synced: PackagesSynced | None, asked: Sequence[str]) -> str:
    """What an install did, for the model."""
    if synced is None:
        return f"already installed: {', '.join(asked)}\n"
    pins = {pin.name: pin for pin in synced.packages}
    lines = [
        f"installed {pins[n].name} {pins[n].version}" if n in pins else f"restored {n}"
        for n in synced.installed
    ]
    lines += [f"removed {name}" for name in synced.removed]
    lines.append(
        "These last until the venv is next synced to the declared packages (before the "
        "tests run): declare what the code needs in requirements.txt."
    )
    return "\n".join(lines) + "\n"
