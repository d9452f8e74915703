"""Answer repairs: named filters for the habits of models, applied before an answer is
checked.

Each filter fixes one thing that needs no judgement, is transport or layout noise rather
than code, and would otherwise cost a whole answer. A model tier lists the filters it
gets (``[profiles.NAME] filters``, all of them by default); the same filters shape a
plan step's change (``apply_filters``) and a candidate's files (``filter_files``):

- ``template_tokens``: a chat template's special tokens (``<|im_end|>``) in a file;
- ``outer_fence``: a whole file wrapped in one Markdown code fence;
- ``placeholders``: a "file" that is only the layout's placeholder (``<the whole file>``,
  ``<|start-of-content|>``), dropped, as no file was written;
- ``planned_paths``: a new file written under another directory than the planned file of
  the same name (``src/todo.py`` for ``todo.py``), moved to the planned path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from forgeline.config import FILTERS
from forgeline.core.events import FileWrite
from forgeline.llm.outputs import Change, CodeChange, EditChange

#: A chat template's special token (``<|im_end|>``, ``<|endoftext|>``, ...).
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_\-]+\|>")
#: A whole text wrapped in one Markdown code fence.
_FENCED = re.compile(r"\A\s*```[\w+.-]*[ \t]*\n(?P<body>.*?\n?)```\s*\Z", re.DOTALL)
#: A file that holds nothing but a placeholder: ``<the whole file>``, ``...``.
_PLACEHOLDER = re.compile(r"\A\s*(?:<[^<>\n]{1,60}>|\.\.\.|…)\s*\Z")


@dataclass(frozen=True)
class Shape:
    """What the filters know of a step: its planned files and which files exist."""

    planned: tuple[str, ...] = ()
    exists: Callable[[str], bool] = field(default=lambda path: False)


Files = dict[str, str]
Filter = Callable[[Files, Shape], Files]


def template_tokens(files: Files, shape: Shape) -> Files:
    return {path: _SPECIAL_TOKEN.sub("", text) for path, text in files.items()}


def outer_fence(files: Files, shape: Shape) -> Files:
    def unwrap(text: str) -> str:
        fenced = _FENCED.match(text)
        return fenced.group("body") if fenced and "```" not in fenced.group("body") else text

    return {path: unwrap(text) for path, text in files.items()}


def placeholders(files: Files, shape: Shape) -> Files:
    return {path: text for path, text in files.items() if not _PLACEHOLDER.match(text)}


def planned_paths(files: Files, shape: Shape) -> Files:
    """Each new file the step did not plan, whose name matches exactly one planned path
    that the answer does not also write, goes to that path."""
    if not shape.planned:
        return files
    by_name: dict[str, list[str]] = {}
    for path in shape.planned:
        by_name.setdefault(PurePosixPath(path).name, []).append(path)

    def moved(path: str) -> str:
        if path in shape.planned or shape.exists(path):
            return path
        match = by_name.get(PurePosixPath(path).name, [])
        return match[0] if len(match) == 1 and match[0] not in files else path

    return {moved(path): text for path, text in files.items()}


NAMED: Mapping[str, Filter] = {
    "template_tokens": template_tokens,
    "outer_fence": outer_fence,
    "placeholders": placeholders,
    "planned_paths": planned_paths,
}
assert tuple(NAMED) == FILTERS, "config.FILTERS names these filters, in this order"


def filter_files(files: Files, names: Sequence[str], shape: Shape = Shape()) -> Files:
    """``files`` (path -> text) through the named filters, in their order."""
    for name in FILTERS:
        if name in names:
            files = NAMED[name](files, shape)
    return files


def apply_filters(change: Change, names: Sequence[str], shape: Shape = Shape()) -> Change:
    """``change`` through the named filters: the files of a whole-file change, the new
    files of search/replace blocks (empty search), the text of a diff (tokens only).
    The same object when nothing changed."""
    if isinstance(change, CodeChange):
        before = {f.path: f.content for f in change.files}
        if len(before) < len(change.files):
            return change  # a path written twice: the checks refuse the answer as it is
        after = filter_files(before, names, shape)
        if after == before:
            return change
        files = tuple(FileWrite(path=path, content=text) for path, text in after.items())
        return change.model_copy(update={"files": files})
    if isinstance(change, EditChange):
        edits = []
        for edit in change.edits:
            if edit.search:
                text = filter_files({edit.path: edit.replace}, _text_only(names))
                edits.append(edit.model_copy(update={"replace": text[edit.path]}))
                continue
            kept = filter_files({edit.path: edit.replace}, names, shape)
            for path, replace in kept.items():
                edits.append(edit.model_copy(update={"path": path, "replace": replace}))
        new = tuple(edits)
        return change if new == change.edits else change.model_copy(update={"edits": new})
    diff = filter_files({"": change.diff}, [n for n in names if n == "template_tokens"])[""]
    return change if diff == change.diff else change.model_copy(update={"diff": diff})


def _text_only(names: Sequence[str]) -> list[str]:
    """The filters that change a text in place (for a search block's replacement)."""
    return [n for n in names if n in ("template_tokens",)]
