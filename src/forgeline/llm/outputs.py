"""What each role must answer: typed, validated outputs (pydantic-ai output types).

The coder and the fixer answer with a change in one of three shapes, picked by
``[coder] edit_format`` (``EDIT_FORMATS``): whole files (``CodeChange``), search/replace
blocks (``EditChange``) or a unified diff (``DiffChange``). The patch engine
(``forgeline.executors.patch``) lands all three.
"""

from __future__ import annotations

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
