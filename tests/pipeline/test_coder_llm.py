"""The built-in LLM coder: file tools, the three edit formats, pre-write checks as retries.

Scripted models on real git workspaces, real pytest runs.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import FileWrite, FixAttempted
from forgeline.llm.filters import FILTERS, Shape, apply_filters, filter_files
from forgeline.llm.outputs import (
    Change,
    CodeChange,
    DiffChange,
    EditChange,
    SearchReplace,
)
from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.pipeline.landing import check_change
from forgeline.workspace.git import GitWorkspace
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project

# --------------------------------------------------------------------------- helpers


def new_file_diff(path: str, content: str) -> str:
    lines = content.splitlines(keepends=True)
    body = "".join(f"+{line}" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    )


def change_diff(path: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )


def as_markdown(answer: dict[str, Any]) -> str:
    """A whole-file answer as the ``files`` edit format's Markdown text."""
    blocks = [f"{f['path']}\n```python\n{f['content']}```" for f in answer["files"]]
    return "\n\n".join([answer.get("summary", ""), *blocks])


def as_format(answer: dict[str, Any], edit_format: str) -> dict[str, Any] | str:
    """A whole-file answer that creates files, in ``edit_format``."""
    files = answer["files"]
    if edit_format == "files":
        return as_markdown(answer)
    if edit_format == "search_replace":
        edits = [{"path": f["path"], "search": "", "replace": f["content"]} for f in files]
        return {"summary": answer["summary"], "edits": edits}
    if edit_format == "diff":
        diff = "".join(new_file_diff(f["path"], f["content"]) for f in files)
        return {"summary": answer["summary"], "diff": diff}
    return answer


def coder_in(edit_format: str, buggy: bool = False) -> Any:
    return lambda m: as_format(todo_project.code_for(m, buggy=buggy), edit_format)


def file(path: str, content: str) -> dict[str, str]:
    return {"path": path, "content": content}


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


# --------------------------------------------------------------------------- tools


async def test_the_coder_reads_the_workspace_with_tools_and_refusals_go_back_to_it(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "NOTES.md").write_text("store items in todo.json\n")
    os.symlink(outside / "secret.txt", ws / "leak.txt")
    answers: dict[str, str] = {}

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if "Implement step [a]" in prompt_text(messages) and not returns:
            tools = {t.name for t in info.function_tools}
            assert tools == {"read_file", "list_files", "search", "run_command"}
            calls = {
                "dotdot": ("read_file", {"path": "../outside/secret.txt"}),
                "absolute": ("read_file", {"path": str(outside / "secret.txt")}),
                "symlink": ("read_file", {"path": "leak.txt"}),
                "notes": ("read_file", {"path": "NOTES.md"}),
                "list": ("list_files", {"directory": "."}),
                "search": ("search", {"pattern": "todo\\.json"}),
                "search_out": ("search", {"pattern": "SECRET", "directory": "../outside"}),
            }
            return ModelResponse(
                parts=[
                    ToolCallPart(name, args, tool_call_id=i) for i, (name, args) in calls.items()
                ]
            )
        answers.update({p.tool_call_id: str(p.content) for p in returns})
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, todo_project.code_for(messages))]
        )

    models = todo_project.models(coder=FunctionModel(respond))
    async with pipeline(tmp_path, models) as p:
        _, state = await run_task(p, "todo cli", "sequential", ws)
    assert state.status == "completed", state.failure
    assert "leaves the workspace ('..')" in answers["dotdot"]
    assert "is absolute" in answers["absolute"]
    assert "resolves outside the workspace" in answers["symlink"]
    assert all(answers[k].startswith("error: refused:") for k in ("dotdot", "absolute", "symlink"))
    assert answers["notes"] == "store items in todo.json\n"
    assert {"NOTES.md", "leak.txt", "plan.yaml"} <= set(answers["list"].splitlines())
    assert answers["search"].splitlines()[0] == "NOTES.md:1: store items in todo.json"
    assert "plan.yaml:2: summary: A todo CLI storing items in todo.json" in answers["search"]
    assert "leaves the workspace" in answers["search_out"]
    assert not any("TOP SECRET" in text for text in answers.values())


async def test_without_tools_the_current_files_are_in_the_prompt(tmp_path: Path) -> None:
    """Small models that cannot call tools still see the code (and no tools are offered)."""
    prompts: list[str] = []

    def reviewer_fix(messages: list[ModelMessage]) -> dict[str, Any]:
        prompts.append(prompt_text(messages))
        if "The reviewer requests" in prompts[-1]:
            body = '"""Tests."""\n' + todo_project.TEST_TODO_PY
            return {"summary": "doc", "files": [{"path": "test_todo.py", "content": body}]}
        return todo_project.code_for(messages)

    def no_tools(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert info.function_tools == []
        args = reviewer_fix(messages)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])

    review = scripted_model([{"approved": False, "comments": ["docstring"]}, todo_project.APPROVE])
    models = todo_project.models(coder=FunctionModel(no_tools), reviewer=review)
    async with pipeline(tmp_path, models, profiles={"frontier": {"tools": False}}) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    review_prompt = next(text for text in prompts if "The reviewer requests" in text)
    assert "### todo.py\n```\n" + todo_project.TODO_PY in review_prompt
    assert "### test_todo.py" in review_prompt
    assert "read_file" not in review_prompt


async def test_files_beyond_the_context_budget_are_named_not_shown(tmp_path: Path) -> None:
    prompts: list[str] = []

    def coder(messages: list[ModelMessage]) -> dict[str, Any]:
        prompts.append(prompt_text(messages))
        return todo_project.code_for(messages)

    models = todo_project.models(coder=scripted_model([coder]))
    async with pipeline(tmp_path, models, coder={"context_chars": 100}) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    step_b = next(text for text in prompts if "Implement step [b]" in text)
    assert "Too long for this prompt (read them with read_file): todo.py" in step_b
    assert "def add(" not in step_b


# --------------------------------------------------------------------------- edit formats


@pytest.mark.parametrize("edit_format", ["files", "search_replace", "diff"])
async def test_each_edit_format_lands_through_the_patch_engine(
    tmp_path: Path, edit_format: str
) -> None:
    """The coder creates the files and the fixer edits one, both in ``edit_format``."""
    fixed = todo_project.TODO_PY
    buggy = todo_project.BUGGY_TODO_PY
    fix: dict[str, Any] | str
    if edit_format == "files":
        fix = as_markdown({"summary": "index from 1", "files": [file("todo.py", fixed)]})
    elif edit_format == "search_replace":
        fix = {
            "summary": "index from 1",
            "edits": [
                {
                    "path": "todo.py",
                    "search": 'items[number]["done"] = True',
                    "replace": 'items[number - 1]["done"] = True',
                }
            ],
        }
    else:
        fix = {"summary": "index from 1", "diff": change_diff("todo.py", buggy, fixed)}
    models = todo_project.models(
        coder=scripted_model([coder_in(edit_format, buggy=True)]), fixer=scripted_model([fix])
    )
    async with pipeline(tmp_path, models, coder={"edit_format": edit_format}) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    assert state.fix_rounds == 1
    assert (p.worktree(state).path / "todo.py").read_text() == fixed
    [attempt] = [e.data for e in events if isinstance(e.data, FixAttempted)]
    assert (attempt.outcome, attempt.files) == ("applied", ("todo.py",))
    subjects = git(p.worktree(state).path, "log", "--format=%s", f"{state.base_commit}..HEAD")
    assert "forgeline fixer: fix round 1" in subjects.splitlines()  # forgeline's words only


NOT_THERE = "items[number + 5]"


@pytest.mark.parametrize("edit_format", ["search_replace", "diff"])
async def test_a_fix_that_does_not_match_goes_back_to_the_model(
    tmp_path: Path, edit_format: str
) -> None:
    """A search block that is not in the file or a diff that does not apply is retried
    with the reason (and the nearest lines) before anything is written."""
    buggy = todo_project.BUGGY_TODO_PY
    fixed = todo_project.TODO_PY
    if edit_format == "search_replace":
        block = {"path": "todo.py", "search": NOT_THERE, "replace": "x"}
        bad: dict[str, Any] = {"summary": "bad", "edits": [block]}
        good: dict[str, Any] = {
            "summary": "good",
            "edits": [
                {"path": "todo.py", "search": "items[number]", "replace": "items[number - 1]"}
            ],
        }
    else:
        stale = buggy.replace("def done(", "def finish(")  # the model misremembers the file
        bad = {"summary": "bad", "diff": change_diff("todo.py", stale, fixed)}
        good = {"summary": "good", "diff": change_diff("todo.py", buggy, fixed)}
    retries: list[str] = []

    def second(messages: list[ModelMessage]) -> dict[str, Any]:
        retries.append(prompt_text(messages))
        return good

    models = todo_project.models(
        coder=scripted_model([coder_in(edit_format, buggy=True)]),
        fixer=scripted_model([bad, second]),
    )
    async with pipeline(tmp_path, models, coder={"edit_format": edit_format}) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    if edit_format == "search_replace":
        assert "the search text does not occur in the file" in retries[0]
        assert 'items[number]["done"] = True' in retries[0]  # the nearest lines
    else:
        assert "the diff does not apply" in retries[0]


BROKEN = "def broken(:\n"


@pytest.mark.parametrize(
    ("edit_format", "bad"),
    [
        ("search_replace", {"edits": [{"path": "../outside.py", "search": "", "replace": "x\n"}]}),
        ("search_replace", {"edits": [{"path": "/etc/x.py", "search": "", "replace": "x\n"}]}),
        ("search_replace", {"edits": [{"path": "todo.py", "search": "x = 1", "replace": "y"}]}),
        ("search_replace", {"edits": [{"path": "todo.py", "search": "", "replace": BROKEN}]}),
        ("search_replace", {"edits": []}),
        ("diff", {"diff": new_file_diff("../outside.py", "x = 1\n")}),
        ("diff", {"diff": "this is not a diff\n"}),
        ("diff", {"diff": ""}),
        ("diff", {"diff": change_diff("nothere.py", "a = 1\n", "a = 2\n")}),
    ],
    ids=[
        "edits-dotdot",
        "edits-absolute",
        "edits-missing-file",
        "edits-syntax-error",
        "edits-empty",
        "diff-dotdot",
        "diff-garbage",
        "diff-empty",
        "diff-missing-file",
    ],
)
async def test_bad_edits_are_refused_before_writing(
    make_workspace: GitWorkspace, edit_format: str, bad: dict[str, Any]
) -> None:
    from pydantic_ai import ModelRetry

    shape: type[EditChange] | type[DiffChange] = (
        EditChange if edit_format == "search_replace" else DiffChange
    )
    change = shape.model_validate(bad)
    before = git(make_workspace.path, "status", "--porcelain")
    with pytest.raises(ModelRetry) as caught:
        await check_change(make_workspace, change)
    assert str(caught.value)
    assert git(make_workspace.path, "status", "--porcelain") == before
    assert not (make_workspace.path.parent / "outside.py").exists()


async def test_good_edits_pass_the_pre_write_checks(make_workspace: GitWorkspace) -> None:
    todo = "todo.py"
    ok: list[Change] = [
        EditChange(edits=(SearchReplace(path=todo, search="VALUE = 1", replace="VALUE = 2"),)),
        DiffChange(diff=change_diff(todo, "VALUE = 1\n", "VALUE = 2\n")),
        CodeChange(files=(FileWrite(path=todo, content="VALUE = 2\n"),)),
        # a no-op passes the checks: landing it reports "no progress"
        CodeChange(files=(FileWrite(path=todo, content="VALUE = 1\n"),)),
    ]
    for change in ok:
        assert await check_change(make_workspace, change) is change


def test_fences_and_chat_tokens_around_a_file_are_named_filters() -> None:
    fenced = "```python\nVALUE = 2\n```<|im_end|>"
    change = apply_filters(CodeChange(files=(FileWrite(path="todo.py", content=fenced),)), FILTERS)
    assert isinstance(change, CodeChange)
    assert change.files[0].content == "VALUE = 2\n"
    edit = EditChange(
        edits=(SearchReplace(path="todo.py", search="VALUE = 1", replace="<|im_end|>VALUE = 3\n"),)
    )
    filtered_edit = apply_filters(edit, FILTERS)
    assert isinstance(filtered_edit, EditChange)
    assert filtered_edit.edits[0].replace == "VALUE = 3\n"
    # a tier without the filter keeps the text as the model wrote it
    kept = apply_filters(CodeChange(files=(FileWrite(path="a.py", content=fenced),)), ())
    assert isinstance(kept, CodeChange) and kept.files[0].content == fenced


def test_the_filters_keep_fences_that_are_part_of_a_file() -> None:
    readme = "```\npip install todo\n```\n\nThen run:\n\n```\ntodo add milk\n```\n"
    assert filter_files({"README.md": readme}, FILTERS) == {"README.md": readme}
    assert filter_files({"a.py": "print('<|x')\n"}, FILTERS) == {"a.py": "print('<|x')\n"}


def test_placeholder_files_are_dropped_and_new_files_go_to_their_planned_paths() -> None:
    answer = {"bank.py": "<the whole file>\n", "src/todo.py": "x = 1\n", "lib/other.py": "y\n"}
    shape = Shape(planned=("todo.py", "bank.py"))
    assert filter_files(answer, FILTERS, shape) == {"todo.py": "x = 1\n", "lib/other.py": "y\n"}
    # an existing file is never moved
    existing = Shape(planned=("todo.py",), exists=lambda path: path == "src/todo.py")
    assert filter_files({"src/todo.py": "x\n"}, FILTERS, existing) == {"src/todo.py": "x\n"}


@pytest.fixture
async def make_workspace(tmp_path: Path) -> GitWorkspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "todo.py").write_text("VALUE = 1\n")
    workspace = GitWorkspace(root)
    await workspace.ensure()
    return workspace


async def test_a_change_rolled_back_after_writing_is_asked_afresh_without_it(
    tmp_path: Path,
) -> None:
    """A diff's Python is checked only once written: the next attempt is a conversation
    of its own, told the rollback's reason but never shown the rolled-back answer."""
    broken = {"summary": "broken", "diff": new_file_diff("todo.py", BROKEN)}
    later: list[tuple[int, str]] = []

    def coder(messages: list[ModelMessage]) -> dict[str, Any]:
        text = prompt_text(messages)
        if "Implement step [a]" in text and "was refused" not in text:
            return broken
        if "was refused" in text:
            later.append((len(messages), text))
        return as_format(todo_project.code_for(messages), "diff")

    models = todo_project.models(coder=scripted_model([coder]))
    async with pipeline(tmp_path, models, coder={"edit_format": "diff"}) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "completed", state.failure
    [(messages, text)] = later
    assert messages == 1  # a fresh conversation: the request alone
    assert "todo.py does not compile (line 1)" in text
    assert "+++ b/todo.py" not in text  # the refused answer never goes back (its reason
    # may quote the line that does not compile)
    subjects = git(p.worktree(state).path, "log", "--format=%s", f"{state.base_commit}..HEAD")
    assert "broken" not in subjects


async def test_a_change_that_stays_broken_fails_the_stage_with_the_reason(tmp_path: Path) -> None:
    broken = {"summary": "broken", "diff": new_file_diff("todo.py", BROKEN)}
    models = todo_project.models(coder=scripted_model([broken]))
    async with pipeline(tmp_path, models, coder={"edit_format": "diff"}, output_retries=1) as p:
        _, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
    assert state.status == "failed"
    assert "the change was rolled back: todo.py does not compile" in (state.failure or "")
    assert not (p.worktree(state).path / "todo.py").exists()
