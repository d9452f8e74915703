"""What each role must answer: typed, validated outputs (pydantic-ai output types).

The coder and the fixer answer with a change in one of three shapes, picked by
``[coder] edit_format`` (``change_output``): whole files (``CodeChange``, asked for as
structured output or, for ``files``, as Markdown text that ``parse_files`` reads),
search/replace blocks (``EditChange``) or a unified diff (``DiffChange``). The patch
engine (``forgeline.executors.patch``) lands all three.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_ai import ModelRetry, TextOutput

from forgeline.core.events import FileSpec, FileWrite, PackageNeed, PlanItem, RunSpec


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
    packages: tuple[PackageNeed, ...] = Field(
        default=(),
        description="Packages from PyPI the program or its tests import (none from the "
        "standard library): the PyPI name, optionally with a version range, and why.",
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


#: A line that opens or closes a Markdown code fence, with its info string.
_FENCE = re.compile(r"^\s*`{3,}\s*(?P<info>[^`]*?)\s*$")
#: What a file's name looks like on its own line: no spaces, a dot or a slash.
_PATH = re.compile(r"^[\w.\-/]*[./][\w.\-/]*$")
#: Decoration small models put around a file name: headings, bold, quotes, "File:".
_DECORATION = re.compile(r"^(?:[#>*<\s`-]|(?i:file)\s*:)+|[*`:>\s]+$")


def files_layout(example: str = "app.py") -> str:
    """How a ``files`` answer is laid out, shown with ``example`` as the path: the coder
    passes a file of the step, since a small model copies the example's path."""
    return (
        "each file as its path on a line of its own, then its whole content in a fenced "
        f"block:\n\n{example}\n```python\n<the whole file>\n```"
    )


#: A file name inside a sentence ("Here is todo.py:"): a dot and an extension.
_NAMED = re.compile(r"\w[\w./-]*\.[A-Za-z0-9]+")


def _file_name(line: str, *, in_text: bool = False) -> str | None:
    """The path ``line`` consists of, or with ``in_text`` the last one it mentions."""
    name = _DECORATION.sub("", line.strip())
    if name and _PATH.match(name) and not name.startswith("."):
        return name
    named = _NAMED.findall(line) if in_text else []
    return named[-1] if named else None


#: A file's extension: a dot and a word that starts with a letter (not ``v1.0``).
_EXTENSION = re.compile(r"\.[A-Za-z]\w*$")


def _commented_name(line: str) -> str | None:
    """The path a block's first line names in a comment (``# app.py``), a habit of small
    models that put no path before the block."""
    if not line.lstrip().startswith("#"):
        return None
    name = _file_name(line)
    return name if name and _EXTENSION.search(name) else None


def parse_files(text: str, planned: Sequence[str] = ()) -> CodeChange:
    """The whole files in a Markdown answer: each a path on its own line (or as the
    fence's info string, ```` ```app.py ````), then its content in a fenced block.

    Code inside JSON must escape every quote, backslash and newline, and a small model
    under a JSON grammar gets that wrong: an unescaped quote ends the string, the grammar
    closes the object, and the file is cut off. Text needs no escaping.

    A block without a path before it may name its file in a comment on its first line
    (``# app.py``, which is then dropped). Blocks without a path take, in order, the
    ``planned`` paths (a plan step's files) that no named block writes; unnamed blocks
    beyond those (a shell command, a usage example) are not files. Raises ``ModelRetry``
    when that leaves no file.
    """
    lines = _SPECIAL_TOKEN.sub("", text).split("\n")
    blocks: list[tuple[str | None, str]] = []
    summary: list[str] = []
    last_text = ""
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                last_text = lines[index]
                if not blocks:
                    summary.append(lines[index].strip())
            index += 1
            continue
        info = opening["info"].split()
        path = next((n for n in map(_file_name, info[1:] + info[:1]) if n), None)
        path = path or _file_name(last_text, in_text=True)
        body: list[str] = []
        index += 1
        while index < len(lines):  # an answer cut off inside a block ends the block
            closing = _FENCE.match(lines[index])
            if closing is not None and not closing["info"]:
                break
            body.append(lines[index])
            index += 1
        index += 1
        if path is None and body and (named := _commented_name(body[0])):
            path, body = named, body[1:]
        if summary and path and _file_name(summary[-1]) == path:
            summary.pop()
        # blank lines before the closing fence are layout: a file ends in one newline
        blocks.append((path, "\n".join(body).rstrip() + "\n"))
        last_text = ""
    free = [p for p in planned if p not in {path for path, _ in blocks}]
    files: list[FileWrite] = []
    for path, content in blocks:
        if path is None and free:
            path = free.pop(0)
        if path is not None:
            files.append(FileWrite(path=path, content=content))
    if not files:
        said = "a fenced block has no file path before it" if blocks else "no file in the answer"
        raise ModelRetry(f"{said}; answer with {files_layout(*planned[:1])}")
    return CodeChange(summary=" ".join(summary)[:500], files=tuple(files))


def change_output(edit_format: str, planned: Sequence[str] = ()) -> Any:
    """The output type the coder and the fixer answer with in ``edit_format`` (``auto``
    resolved first: ``CoderConfig.format_for``): a structured change (``EDIT_FORMATS``),
    or for ``files`` Markdown text whose unnamed blocks go to ``planned``
    (``parse_files``)."""
    if edit_format != "files":
        return EDIT_FORMATS[edit_format]
    paths = tuple(planned)

    def parse_answer(text: str) -> CodeChange:
        return parse_files(text, paths)

    return TextOutput(parse_answer)


#: The structured output types, per ``[coder] edit_format`` (see ``change_output``).
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
