"""The terminal tool in a coder's or fixer's hands, bounded per stage run.

Where the task's tier allows tool use (``[profiles.NAME] tools``), the model may run
allowlisted commands in the task's worktree through the sandbox (``tools/terminal.py``):
its tests, a linter, ``git diff``. A stage run gets at most ``commands`` of them and
``command_seconds`` in all; past either bound a command is refused without running.
Every command, run or refused, is recorded as ``tool.command`` with the stage's result.

Commands never change the branch: what they write in the tree is dropped before the
step's change lands (``landing.Lander``), so every file the step changes goes through the
patch engine's checks and validation, and the commit holds only that.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from forgeline.config import Profile
from forgeline.core.events import ToolCommand
from forgeline.tools.terminal import Terminal, TerminalError

#: ``ToolCommand.rule`` of a command refused because the stage's bound is spent.
BUDGET_RULE = "stage budget"


class StageCommands:
    """One stage run's terminal: the tool the model calls and the bound it keeps."""

    def __init__(self, terminal: Terminal, profile: Profile) -> None:
        self.terminal = terminal
        self.limit = profile.commands
        self.seconds = profile.command_seconds
        self.spent = 0.0
        self.started = 0
        """Commands let through so far (the model may call several at once)."""

    @property
    def commands(self) -> list[ToolCommand]:
        return self.terminal.commands

    def _refusal(self) -> str | None:
        if self.started >= self.limit:
            return f"this step may run {self.limit} command(s), and has"
        if self.spent >= self.seconds:
            return f"this step's {self.seconds:g} seconds of commands are spent"
        return None

    async def run(self, argv: list[str]) -> str:
        """Run ``argv`` within the bounds; the answer the model gets."""
        refusal = self._refusal()
        if refusal is not None:
            self.commands.append(
                ToolCommand(
                    argv=tuple(map(str, argv)), denied=True, rule=BUDGET_RULE, output=refusal
                )
            )
            return f"refused: {refusal}; answer with your change now\n"
        self.started += 1
        config = self.terminal.config
        left = self.seconds - self.spent
        self.terminal.config = config.model_copy(update={"timeout": min(config.timeout, left)})
        started = time.monotonic()
        try:
            return (await self.terminal.run(argv)).answer()
        except TerminalError as exc:
            return f"error: {exc}\n"
        finally:
            self.spent += time.monotonic() - started
            self.terminal.config = config

    def toolset(self) -> FunctionToolset[Any]:
        """A pydantic-ai toolset with one tool, ``run_command(argv)``."""

        async def run_command(argv: list[str]) -> str:
            """Run a command in the repository (sandboxed) and get its output and exit code.

            Only allowlisted commands run (python, pytest, ls, cat, grep, git status/diff/
            log, ...); a refused one says which rule refused it. Files a command writes
            are discarded: put every change in your answer.

            Args:
                argv: The command as a list of arguments, e.g. ["pytest", "-q"]; never a
                    shell string.
            """
            return await self.run(argv)

        return FunctionToolset([run_command])
