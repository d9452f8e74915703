"""What each role must answer: typed, validated outputs (pydantic-ai output types).

The coder and the fixer answer with a change in one of three shapes, picked by
``[coder] edit_format`` (``EDIT_FORMATS``): whole files (``CodeChange``), search/replace
blocks (``EditChange``) or a unified diff (``DiffChange``). The patch engine
(``forgeline.executors.patch``) lands all three.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forgeline.core.events import FileSpec, FileWrite, PlanItem, RunSpec


class Output(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanOutput(Output):
    summary: str = Field(description="One sentence: what will be built.")
    items: tuple[PlanItem, ...] = Field(
        min_length=1,
        description="Steps as a DAG: ids, what to do, depends_on ids, files each step writes.",
    )


class ArchitectureOutput(Output):
    summary: str = Field(description="The design in one paragraph.")
    decision: str = Field(description="The ADR body: context, decision, consequences.")
    files: tuple[FileSpec, ...] = Field(default=(), description="Files the project will have.")
    run: RunSpec = Field(
        default=RunSpec(),
        description="How to smoke-run it: cli/library run `command` once; web starts it "
        "with {port} and polls health_path.",
    )


class CodeChange(Output):
    summary: str = Field(default="", description="What changed and why, one line.")
    files: tuple[FileWrite, ...] = Field(
        description="Whole new contents of every file to create or replace, paths relative "
        "to the repository root."
    )


class SearchReplace(Output):
    """Replace the one occurrence of ``search`` in ``path`` by ``replace``."""

    path: str = Field(description="The file, relative to the repository root.")
    search: str = Field(
        description="Exact text to find, whitespace and indentation included; it must occur "
        "exactly once in the file. Empty to create a file that does not exist yet."
    )
    replace: str = Field(
        description="The text that takes its place (for a new file: its whole content)."
    )


class EditChange(Output):
    kind: Literal["edits"] = "edits"
    summary: str = Field(default="", description="What changed and why, one line.")
    edits: tuple[SearchReplace, ...] = Field(
        description="Search/replace blocks, applied in order; later blocks see the result of "
        "earlier ones."
    )


class DiffChange(Output):
    kind: Literal["diff"] = "diff"
    summary: str = Field(default="", description="What changed and why, one line.")
    diff: str = Field(
        description="A unified diff as `git diff` writes it: `--- a/<path>` and "
        "`+++ b/<path>` headers (`/dev/null` for a new file), `@@` hunks with three lines of "
        "unchanged context, paths relative to the repository root."
    )


Change = CodeChange | EditChange | DiffChange

#: A chat template's special token (``<|im_end|>``, ``<|endoftext|>``, ...) that a small
#: model sometimes writes into a file.
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_\-]+\|>")
#: A whole text wrapped in one Markdown code fence.
_FENCED = re.compile(r"\A\s*```[\w+.-]*[ \t]*\n(?P<body>.*?\n?)```\s*\Z", re.DOTALL)


def tidy_text(text: str) -> str:
    """``text`` without chat-template tokens and without a Markdown fence around all of it.

    Both are transport noise from models, never file content; removing them is cheaper
    and surer than asking a small model to answer again.
    """
    text = _SPECIAL_TOKEN.sub("", text)
    fenced = _FENCED.match(text)
    return fenced.group("body") if fenced and "```" not in fenced.group("body") else text


def tidy_change(change: Change) -> Change:
    """``change`` with ``tidy_text`` applied to the text it writes (the same object when
    nothing needed it). Search texts are left alone: they must match the file."""
    if isinstance(change, CodeChange):
        files = tuple(f.model_copy(update={"content": tidy_text(f.content)}) for f in change.files)
        return change if files == change.files else change.model_copy(update={"files": files})
    if isinstance(change, EditChange):
        edits = tuple(e.model_copy(update={"replace": tidy_text(e.replace)}) for e in change.edits)
        return change if edits == change.edits else change.model_copy(update={"edits": edits})
    diff = tidy_text(change.diff)
    return change if diff == change.diff else change.model_copy(update={"diff": diff})


#: The output type the coder and the fixer answer with, per ``[coder] edit_format``.
EDIT_FORMATS: dict[str, type[CodeChange] | type[EditChange] | type[DiffChange]] = {
    "whole": CodeChange,
    "search_replace": EditChange,
    "diff": DiffChange,
}


class ReviewOutput(Output):
    approved: bool
    comments: tuple[str, ...] = Field(
        default=(), description="Concrete changes requested; empty when approved."
    )
