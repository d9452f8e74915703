"""Coder back-ends: who proposes a step's change. One protocol, three kinds.

- ``ModelBackend`` (``[coder] backend = "llm"``): the role's model answers in the edit
  format (``[coder] edit_format``), with the read-only file tools and the bounded terminal
  where the task's tier allows tool use. Its answer goes through the tier's named filters
  (``llm/filters.py``) and the pre-write checks before anything is written.
- ``CliBackend`` (``aider``, ``codex``, ``claude``): that CLI edits the worktree through the
  spawner; its edits come back as a diff and the tree is reset (``executors/adapters.py``).
- ``PatternBackend``: a deterministic pattern executor a plan item asks for
  (``executors/router.py``).

``write`` is the one loop around them: propose, screen, land (``landing.Lander``). A
refused or rolled-back answer is never shown to the model again: the next attempt is a
fresh conversation with the same prompt, the reason appended, sampled with the next
seed. A CLI or a pattern gets one attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from pydantic_ai.exceptions import UnexpectedModelBehavior

from forgeline.config import ModelRole
from forgeline.errors import StageError
from forgeline.executors.adapters import AdapterRequest, adapter_for
from forgeline.executors.router import PatternRoute
from forgeline.llm.filters import Shape, apply_filters
from forgeline.llm.outputs import Change, change_output
from forgeline.llm.tools import WorkspaceTools
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.fresh import refusal, sampling, with_reason
from forgeline.pipeline.landing import (
    Landed,
    Lander,
    NoProgressError,
    RolledBackError,
    UnchangedError,
    check_change,
    exists,
    require_planned,
)

#: Called with a proposed change before it lands; raises to refuse it (the fixer's
#: repeat check).
Screen = Callable[[Change], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    """One coder or fixer step: what to ask, and what the answer must do."""

    run: StageRun
    role: ModelRole
    instructions: str
    request: str
    what: str
    """The step in forgeline's words: the commit message and error messages use it."""
    focus: tuple[str, ...] = ()
    """Files that matter most (a plan step's): shown first, passed to a CLI; a model's
    answer must create those that do not exist yet."""
    must_change: bool = False
    """An answer that leaves every file as it is cannot be right (the fixer's)."""


class Rejected(StageError):
    """A proposal refused before anything was written; ``reason`` says why."""

    def __init__(self, what: str, reason: str, *, unchanged: bool = False) -> None:
        self.reason = reason
        self.unchanged = unchanged
        super().__init__(f"{what}: the answer was refused: {reason}")


class Backend(Protocol):
    """Proposes a step's change (None: nothing to change)."""

    name: str
    attempts: int
    """How many proposals one step may ask for before it fails."""

    async def propose(self, step: Step, seed: int, told: str | None) -> Change | None:
        """A proposal; ``seed`` 0 is the configured sampling, others sample afresh, and
        ``told`` is why the previous proposal was refused."""
        ...


class ModelBackend:
    """The role's model, asked once per attempt in a conversation of its own."""

    name = "llm"

    def __init__(self, agent: StageAgent, lander: Lander) -> None:
        self.agent = agent
        self.lander = lander
        self.attempts = agent.services.settings.output_retries + 1

    async def propose(self, step: Step, seed: int, told: str | None) -> Change:
        run, services = step.run, self.agent.services
        workspace = run.workspace
        _, profile = run.tier
        config = services.settings.coder
        edit_format = config.format_for(local=services.models.is_local(step.role))
        paths = (*step.focus, *run.state.files)
        instructions = "\n\n".join(
            [step.instructions, prompts.answer_format(edit_format, paths)]
            + ([prompts.TOOLS] if profile.tools else [])
        )
        agent = self.agent.model_agent(
            step.role, change_output(edit_format, step.focus), instructions, output_retries=0
        )
        protected = tuple(run.state.spec.test_files) if run.state.spec else ()
        shape = Shape(planned=step.focus, exists=lambda path: exists(workspace, path))

        async def pre_write(change: Change) -> Change:
            async with workspace.lock:  # a concurrent item may be landing in this tree
                change = apply_filters(change, profile.filters, shape)
                change = await check_change(
                    workspace,
                    change,
                    must_change=step.must_change,
                    protected=protected,
                    max_file_bytes=config.max_file_bytes,
                )
                require_planned(change, step.focus, workspace)
                return change

        agent.output_validator(pre_write)
        toolsets: list[Any] | None = None
        if profile.tools:
            retries = max(1, services.settings.output_retries)
            toolsets = [
                WorkspaceTools(workspace).toolset(retries),
                (await run.terminal()).toolset(),
            ]
        files = self.lander.context_files(run, step.focus, tools=profile.tools)
        prompt = with_reason(f"{step.request}\n\nCurrent files:\n{files}", told)
        try:
            result = await agent.run(
                prompt, toolsets=toolsets, model_settings=sampling(seed, profile.temperature)
            )
        except UnexpectedModelBehavior as exc:
            reason, retry = refusal(exc)
            unchanged = isinstance(retry, UnchangedError)
            raise Rejected(step.what, reason, unchanged=unchanged) from exc
        return cast(Change, result.output)


class CliBackend:
    """A coding CLI (``[coder] backend``), run once in the worktree."""

    attempts = 1

    def __init__(self, agent: StageAgent) -> None:
        self.agent = agent
        self.name: str = agent.services.settings.coder.backend

    async def propose(self, step: Step, seed: int, told: str | None) -> Change:
        config = self.agent.services.settings.coder
        adapter = adapter_for(config)
        problems = adapter.validate_config()
        if problems:
            raise StageError(f"coder back-end {config.backend}: {'; '.join(problems)}")
        workspace = step.run.workspace
        async with workspace.lock:
            await workspace.checkout(step.run.state.branch)
        request = AdapterRequest(prompt=f"{step.instructions}\n\n{step.request}", files=step.focus)
        result = await adapter.execute(request, workspace, self.agent.services.spawner)
        return result.require_change()


class PatternBackend:
    """The deterministic pattern executor a plan item asks for."""

    attempts = 1

    def __init__(self, route: PatternRoute) -> None:
        self.route = route
        self.name = f"pattern:{route.name}"

    async def propose(self, step: Step, seed: int, told: str | None) -> Change | None:
        result = await self.route.executor.execute(
            self.route.context(step.run.workspace, step.run.tools)
        )
        return result.change


def backend_for(agent: StageAgent, lander: Lander) -> Backend:
    """The configured back-end (``[coder] backend``)."""
    if agent.services.settings.coder.backend == "llm":
        return ModelBackend(agent, lander)
    return CliBackend(agent)


async def write(
    step: Step,
    backend: Backend,
    lander: Lander,
    *,
    screen: Screen | None = None,
    first: Callable[[], Awaitable[Change | None]] | None = None,
) -> Landed:
    """Ask ``backend`` for the step's change and land it; ask afresh (up to its
    ``attempts``) while a proposal is refused or rolled back. ``first`` proposes the first
    attempt instead (a choice among several candidates, ``trials``)."""
    told: str | None = None
    last: StageError | None = None
    for attempt in range(backend.attempts):
        try:
            if attempt == 0 and first is not None:
                change = await first()
            else:
                change = await backend.propose(step, attempt, told)
            if change is not None and screen is not None:
                await screen(change)
            landed = await lander.land(step.run, change, step.what)
        except (Rejected, RolledBackError) as exc:
            told, last = exc.reason, exc
            continue
        return replace(landed, backend=backend.name)
    assert last is not None, "a back-end has at least one attempt"
    if isinstance(last, Rejected) and last.unchanged:
        raise NoProgressError(f"{step.what}: no progress: {last.reason}") from last
    if backend.attempts > 1:
        raise StageError(
            f"{step.what}: no usable answer in {backend.attempts} attempts; the last: {last}"
        ) from last
    raise last
