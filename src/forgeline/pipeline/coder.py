"""Coder: plan.item.dispatched -> plan.item.completed; review changes -> code.pr.opened.

Per plan item, the router (executors/router.py) picks a deterministic pattern executor
when the item asks for one; everything else goes to the back-end ``[coder] backend``
names (``CodeWriter.write``, shared with the fixer):

- ``llm``: the role's model answers in ``[coder] edit_format`` (whole files as
  structured output or as Markdown text, search/replace blocks or a unified diff), with
  read-only file tools (``forgeline.llm.tools``) when ``[coder] tools`` is on and the
  current files in the prompt as far as ``context_chars`` allows. Before anything
  touches the disk the answer goes through the patch engine's pre-write checks (not
  empty, every path inside the workspace, every search block found exactly once, the diff
  applies, the Python files parse); a failing answer goes back to the model with the
  reason (``ModelRetry``, bounded by ``output_retries``). A change the engine still rolls
  back after writing it (it does not compile, the tests no longer collect) goes back to
  the model the same way, in the same conversation, as often as ``output_retries``.
- ``aider``/``codex``/``claude``: that CLI edits the workspace through the spawner
  (``executors/adapters.py``); its edits come back as a diff and the tree is reset.

Either way the change lands through the patch engine, which validates it in the tree
(Python compiles, the tests still collect) and rolls it back exactly when it does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any, cast

from pydantic_ai import Agent, AgentRunResult, ModelRetry
from pydantic_ai.exceptions import AgentRunError
from pydantic_ai.messages import ModelMessage
from pydantic_ai.settings import ModelSettings

from forgeline.config import CoderConfig, EditFormat
from forgeline.config import ModelRole as Role
from forgeline.core.events import (
    CodePrOpened,
    NewEvent,
    PlanItemCompleted,
    PlanItemDispatched,
    ReviewDecision,
)
from forgeline.errors import StageError, WorkspaceError
from forgeline.executors.adapters import AdapterRequest, adapter_for
from forgeline.executors.patch import (
    MAX_FILE_BYTES,
    EmptyChangeError,
    PatchError,
    apply_change,
    change_fingerprint,
    plan_change,
    revert_change,
)
from forgeline.executors.router import route
from forgeline.executors.validation import PythonValidator, source_problem
from forgeline.llm.outputs import (
    Change,
    CodeChange,
    DiffChange,
    EditChange,
    change_output,
    tidy_change,
)
from forgeline.llm.tools import WorkspaceTools
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.pipeline.research import research_notes
from forgeline.runs.testrun import TestReport, run_pytest
from forgeline.workspace.git import GitWorkspace, confined_path
from forgeline.workspace.venv import WorkspaceVenv

#: Called with a proposed change before it lands; raises to refuse it (the fixer's
#: repeat check).
Screen = Callable[[Change], Awaitable[None]]


class NoProgressError(StageError):
    """The change would leave the code as it is, or as an earlier round left it."""


class UnchangedError(ModelRetry):
    """The model's answer leaves every file as it is, where that cannot be the answer (the
    fixer's): it goes back to the model; when it is the last answer, the round made no
    progress."""


class RolledBackError(StageError):
    """The patch engine refused or rolled back the change; ``reason`` says why."""

    def __init__(self, what: str, reason: str) -> None:
        self.reason = reason.removeprefix("the change was rolled back: ")
        super().__init__(f"{what}: the change was rolled back: {self.reason}")


@dataclass(frozen=True)
class Landed:
    """A change committed on the task branch (``commit == base`` when there was none)."""

    base: str
    commit: str
    files: list[str]
    change: Change | None = None
    backend: str = "llm"


def _empty_hint(change: Change) -> str | None:
    """What to say when the answer proposes nothing at all."""
    if isinstance(change, CodeChange) and not change.files:
        return "the change is empty: return at least one file with its full content"
    if isinstance(change, EditChange) and not change.edits:
        return "the change is empty: return at least one search/replace block"
    if isinstance(change, DiffChange) and not change.diff.strip():
        return "the diff is empty: return a unified diff that changes at least one file"
    return None


_FORMAT_HINT: dict[type[object], str] = {
    CodeChange: "use a relative path inside the repository, once each",
    EditChange: "quote the file's current text exactly, with paths inside the repository",
    DiffChange: "make the diff against the files as they are now (read them first), with "
    "a/ and b/ paths inside the repository",
}


async def check_change(
    workspace: GitWorkspace,
    change: Change,
    *,
    must_change: bool = False,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Change:
    """Raise ``ModelRetry`` saying what is wrong with ``change``, else return it tidied
    (``tidy_change``: no chat-template tokens, no Markdown fence around a file).

    The patch engine's own pre-write checks (touching nothing), run while the model can
    still answer again. A change that would leave every file as it is passes unless
    ``must_change``: for the coder, a step whose files are already as asked is done. The
    fixer passes ``must_change``: its tests fail, so the same files are never a fix (the
    1.5B fixer echoed them, and that landed as a fix round).
    """
    change = tidy_change(change)
    hint = _empty_hint(change)
    if hint is not None:
        raise ModelRetry(hint)
    try:
        _, contents = await plan_change(workspace, change, max_file_bytes=max_file_bytes)
    except EmptyChangeError as exc:
        if isinstance(change, DiffChange):  # a diff that names no file is malformed
            raise ModelRetry(f"{exc}; {_FORMAT_HINT[DiffChange]}") from exc
        if must_change:
            raise UnchangedError(
                f"{exc}, and the tests still fail: change the code, or a test whose "
                "expected value contradicts the request"
            ) from exc
        return change
    except PatchError as exc:
        raise ModelRetry(f"{exc}; {_FORMAT_HINT[type(change)]}") from exc
    for rel, text in contents.items():
        if rel.endswith(".py") and (problem := source_problem(rel, text)):
            raise ModelRetry(problem)
    return change


def to_planned_paths(change: Change, planned: Sequence[str], workspace: GitWorkspace) -> Change:
    """``change`` with each new file moved to the planned path of the same name.

    Asked for ``mathutils.py``, a small model sometimes writes ``src/mathutils.py`` (and
    ``tests/test_x.py`` for ``test_x.py``), and imports between the files then fail. A
    file the step did not plan, that does not exist yet, and whose name matches exactly
    one planned path that the change does not also write, goes to that path.
    """
    if not planned:
        return change
    by_name: dict[str, list[str]] = {}
    for path in planned:
        by_name.setdefault(PurePosixPath(path).name, []).append(path)
    written = _new_file_paths(change)

    def planned_path(path: str) -> str:
        if path in planned or _exists(workspace, path):
            return path
        match = by_name.get(PurePosixPath(path).name, [])
        return match[0] if len(match) == 1 and match[0] not in written else path

    if isinstance(change, CodeChange):
        files = tuple(f.model_copy(update={"path": planned_path(f.path)}) for f in change.files)
        return change if files == change.files else change.model_copy(update={"files": files})
    if isinstance(change, EditChange):
        edits = tuple(
            e.model_copy(update={"path": planned_path(e.path)}) if not e.search else e
            for e in change.edits
        )
        return change if edits == change.edits else change.model_copy(update={"edits": edits})
    return change


def require_planned(change: Change, planned: Sequence[str], workspace: GitWorkspace) -> None:
    """Raise ``ModelRetry`` naming the planned files that neither exist nor are created by
    ``change`` (a diff is not read for this)."""
    if isinstance(change, DiffChange):
        return
    written = _new_file_paths(change)
    missing = [p for p in planned if p not in written and not _exists(workspace, p)]
    if missing:
        raise ModelRetry(
            f"this step creates {', '.join(missing)}: answer with "
            f"{'its' if len(missing) == 1 else 'their'} full content"
        )


def _exists(workspace: GitWorkspace, path: str) -> bool:
    try:
        return confined_path(workspace.path, path).exists()
    except WorkspaceError:
        return True  # not a path to move: the pre-write checks say what is wrong with it


def _new_file_paths(change: Change) -> set[str]:
    if isinstance(change, CodeChange):
        return {f.path for f in change.files}
    if isinstance(change, EditChange):
        return {e.path for e in change.edits if not e.search}
    return set()


def instructions_for(
    base: str, edit_format: EditFormat, config: CoderConfig, paths: Sequence[str] = ()
) -> str:
    """The role's instructions plus how to answer (edit format, shown with the first of
    ``paths`` as its example) and the tools."""
    parts = [base, prompts.answer_format(edit_format, paths)]
    if config.tools:
        parts.append(prompts.TOOLS)
    return "\n\n".join(parts)


def failure_reason(exc: BaseException) -> str:
    """What ``stage.failed`` says for ``exc`` (as the stage base class words it)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, AgentRunError):
        text = f"the model's output was still invalid after retries: {text}"
        if exc.__cause__ is not None and str(exc.__cause__):
            text += f" ({exc.__cause__})"
    return text[:4000]


ROLLED_BACK = """The patch engine rolled that change back; none of it was kept: {reason}
Answer again with a corrected change, made against the files as they are now."""


class CodeWriter(StageAgent):
    """Shared by the coder and the fixer: ask the back-end for a change, land it, commit it."""

    @property
    def coder_config(self) -> CoderConfig:
        return self.services.settings.coder

    async def write(
        self,
        run: StageRun,
        role: Role,
        instructions: str,
        request: str,
        what: str,
        focus: Sequence[str] = (),
        *,
        screen: Screen | None = None,
        must_change: bool = False,
    ) -> Landed:
        """Get a change for ``request`` from the configured back-end and land it.

        ``focus`` names the files that matter most (shown first to a model, passed to a
        CLI): a plan step's files. A model's answer must create those that do not exist
        yet, and its new files go to them (``to_planned_paths``). ``screen`` sees each
        proposal before it lands and may refuse it by raising. With ``must_change`` a
        model's answer that leaves every file as it is goes back to it (``check_change``).
        """
        if self.coder_config.backend == "llm":
            return await self._write_with_model(
                run, role, instructions, request, what, focus, screen, must_change
            )
        return await self._write_with_cli(run, instructions, request, what, focus, screen)

    async def _write_with_model(
        self,
        run: StageRun,
        role: Role,
        instructions: str,
        request: str,
        what: str,
        focus: Sequence[str],
        screen: Screen | None,
        must_change: bool,
    ) -> Landed:
        config = self.coder_config
        workspace = run.workspace
        edit_format = config.format_for(local=self.services.models.is_local(role))
        agent = self.model_agent(
            role,
            change_output(edit_format, focus),
            instructions_for(instructions, edit_format, config, (*focus, *run.state.files)),
        )

        async def pre_write(change: Change) -> Change:
            async with workspace.lock:  # a concurrent item may be landing in this tree
                planned = to_planned_paths(change, focus, workspace)
                change = await check_change(
                    workspace,
                    planned,
                    must_change=must_change,
                    max_file_bytes=self.coder_config.max_file_bytes,
                )
                require_planned(change, focus, workspace)
                return change

        agent.output_validator(pre_write)
        retries = self.services.settings.output_retries
        toolsets = [WorkspaceTools(workspace).toolset(max(1, retries))] if config.tools else None
        prompt = f"{request}\n\nCurrent files:\n{self.context_files(run, focus)}"
        history: list[ModelMessage] | None = None
        for left in range(retries, -1, -1):
            candidates = self.services.settings.candidates
            if history is None and candidates > 1:
                result = await self._choose(run, agent, prompt, toolsets, candidates)
            else:
                result = await agent.run(prompt, message_history=history, toolsets=toolsets)
            change = cast(Change, result.output)
            if screen is not None:
                await screen(change)
            try:
                return await self.land(run, change, what)
            except RolledBackError as exc:
                if not left:
                    raise
                history = result.all_messages()
                prompt = ROLLED_BACK.format(reason=exc.reason)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _choose(
        self,
        run: StageRun,
        agent: Agent[Any, Any],
        prompt: str,
        toolsets: list[Any] | None,
        count: int,
    ) -> AgentRunResult[Any]:
        """Ask for ``count`` candidate changes and keep the one that does best when run.

        The first candidate uses the configured settings, the others are sampled
        (temperature 0.8, a seed each, so the response cache keeps them apart). Each
        distinct candidate is applied through the patch engine, the workspace's tests are
        run against it, and it is reverted. The best has the most passing minus failing
        tests (a test the candidate removes counts as failing); ties go to the answer most
        candidates agree on, then to the earliest.
        Small models gain more from choosing among answers than from asking again.
        """
        results: list[AgentRunResult[Any]] = []
        error: Exception | None = None
        for index in range(count):
            settings: ModelSettings = {"temperature": 0.8, "seed": index} if index else {}
            try:
                results.append(await agent.run(prompt, toolsets=toolsets, model_settings=settings))
            except AgentRunError as exc:  # this candidate never validated; others may
                error = exc
        if not results:
            assert error is not None
            raise error
        votes = Counter(change_fingerprint(cast(Change, r.output)) for r in results)
        distinct = {change_fingerprint(cast(Change, r.output)): r for r in results}
        if len(distinct) == 1:
            return results[0]
        scored: list[tuple[tuple[int, int, int], AgentRunResult[Any]]] = []
        venv = await run.venv()
        async with run.workspace.lock:  # the tests as they are now: none may go missing
            await run.workspace.checkout(run.state.branch)
            before = await self._run_tests(run, venv)
        for order, (fingerprint, result) in enumerate(distinct.items()):
            passing = await self._score(run, cast(Change, result.output), venv, before.tests)
            if passing is not None:
                scored.append(((passing, votes[fingerprint], -order), result))
        if not scored:
            return results[0]  # none applies: let landing report why
        return max(scored, key=lambda item: item[0])[1]

    async def _score(
        self, run: StageRun, change: Change, venv: WorkspaceVenv | None, tests_before: int
    ) -> int | None:
        """Passing minus failing tests with ``change`` applied (then reverted), or None
        when it does not apply or validate. Tests the change removes count as failing: a
        candidate does not win by deleting the tests that fail."""
        workspace = run.workspace
        async with workspace.lock:
            await workspace.checkout(run.state.branch)
            try:
                applied = await apply_change(
                    workspace,
                    change,
                    validate=PythonValidator(self.services.spawner, venv=venv, sync=run.venv),
                    max_file_bytes=self.coder_config.max_file_bytes,
                )
            except PatchError:
                return None
            try:
                report = await self._run_tests(run, venv)
            finally:
                await revert_change(workspace, applied)
        missing = max(0, tests_before - report.tests)
        return report.passed - report.failed - report.errors - missing

    async def _run_tests(self, run: StageRun, venv: WorkspaceVenv | None) -> TestReport:
        """The workspace's tests as the tree is now (the caller holds the lock)."""
        return await run_pytest(
            run.workspace.path,
            self.services.spawner,
            timeout=self.services.settings.test_timeout,
            venv=venv,
        )

    async def _write_with_cli(
        self,
        run: StageRun,
        instructions: str,
        request: str,
        what: str,
        focus: Sequence[str],
        screen: Screen | None,
    ) -> Landed:
        config = self.coder_config
        adapter = adapter_for(config)
        problems = adapter.validate_config()
        if problems:
            raise StageError(f"coder back-end {config.backend}: {'; '.join(problems)}")
        workspace = run.workspace
        async with workspace.lock:
            await workspace.checkout(run.state.branch)
        request_ = AdapterRequest(prompt=f"{instructions}\n\n{request}", files=tuple(focus))
        result = await adapter.execute(request_, workspace, self.services.spawner)
        change = result.require_change()
        if screen is not None:
            await screen(change)
        return replace(await self.land(run, change, what), backend=config.backend)

    async def land(self, run: StageRun, change: Change | None, what: str) -> Landed:
        """Apply ``change`` through the patch engine and commit it."""
        workspace = run.workspace
        async with workspace.lock:
            await workspace.checkout(run.state.branch)
            base = await workspace.head()
            if change is None:
                return Landed(base, base, [])
            validator = PythonValidator(self.services.spawner, sync=run.venv)
            try:
                applied = await apply_change(
                    workspace,
                    change,
                    validate=validator,
                    max_file_bytes=self.coder_config.max_file_bytes,
                )
            except EmptyChangeError as exc:
                raise NoProgressError(
                    f"{what}: no progress, the change leaves every file as it is"
                ) from exc
            except PatchError as exc:
                raise RolledBackError(what, str(exc)) from exc
            files = list(applied.paths)
            commit = await run.commit(files, f"{what}: {change.summary}".rstrip(": "))
        return Landed(base, commit, files, change)

    def context_files(self, run: StageRun, focus: Sequence[str] = ()) -> str:
        """The current files for the prompt: ``focus`` first, then the task's files, within
        ``[coder] context_chars``; files that do not fit are named (the tools read them)."""
        budget = self.coder_config.context_chars
        shown: dict[str, str] = {}
        left_out: list[str] = []
        used = 0
        for name in dict.fromkeys((*focus, *run.state.files)):
            try:
                text = run.workspace.read_file(name)
            except WorkspaceError:
                continue
            if text is None:
                continue
            if used + len(text) > budget:
                left_out.append(name)
                continue
            shown[name] = text
            used += len(text)
        block = prompts.files_block(shown)
        if left_out:
            how = "read them with read_file" if self.coder_config.tools else "not shown"
            block += f"\n\nToo long for this prompt ({how}): {', '.join(left_out)}"
        return block


class CoderAgent(CodeWriter):
    stage = "coder"

    async def run(self, run: StageRun) -> list[NewEvent]:
        data = run.trigger.data
        if isinstance(data, PlanItemDispatched):
            return await self._item(run, data.item_id)
        if isinstance(data, ReviewDecision):
            return await self._review(run, data)
        raise StageError(f"the coder does not handle {run.trigger.type}")

    async def _item(self, run: StageRun, item_id: str) -> list[NewEvent]:
        state = run.state
        if item_id not in state.items:
            raise StageError(f"plan item {item_id!r} is not in the plan")
        item = state.items[item_id].item
        await run.begin_change(f"plan item {item.id}: {item.title}")
        context = "\n\n".join(
            part for part in (prompts.task_context(state), research_notes(state, run.workspace))
            if part
        )  # fmt: skip
        request = (
            f"{context}\n\nImplement step [{item.id}] {item.title}: "
            f"{item.description}\nFiles for this step: {', '.join(item.files) or 'your choice'}"
        )
        what = f"plan item {item.id} ({item.title})"
        pattern = route(item)
        if pattern is None:
            try:
                landed = await self.write(run, "coder", prompts.CODER, request, what, item.files)
            except NoProgressError:
                # An earlier step already wrote what this one asks for (small models split
                # "create the file" from "write its function"): the step is done as it is.
                landed = await self.land(run, None, what)
        else:
            result = await pattern.executor.execute(pattern.context(run.workspace, run.tools))
            landed = await self.land(run, result.change, f"{what} [{result.pattern}]")
        done = PlanItemCompleted(
            item_id=item.id,
            commit=landed.commit,
            parent=landed.base,
            files=tuple(landed.files),
            change_id=run.change.change_id if run.change else None,
        )
        return [
            run.event(done),
            *await run.completed_change(landed.commit, landed.base, landed.files),
        ]

    async def _review(self, run: StageRun, review: ReviewDecision) -> list[NewEvent]:
        state = run.state
        await run.begin_change("changes requested by the reviewer")
        comments = "\n".join(f"- {c}" for c in review.comments) or "- (no comments)"
        request = (
            f"{prompts.task_context(state)}\n\nThe reviewer requests these changes:\n{comments}"
        )
        landed = await self.write(
            run, "coder", prompts.CODER, request, "changes requested in review"
        )
        opened = CodePrOpened(
            branch=state.branch,
            commit=landed.commit,
            round=state.review_rounds + 1,
            reason="review",
            files=tuple(landed.files),
        )
        return [
            run.event(opened),
            *await run.completed_change(landed.commit, landed.base, landed.files),
        ]
