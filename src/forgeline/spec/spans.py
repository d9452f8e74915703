"""Where calls and placeholders are in a request's text."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CALL_START = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")
#: Longest call the scanner reads (characters).
_MAX_CALL = 240


@dataclass(frozen=True)
class CallSpan:
    """``name(...)`` in the text: where it is and its source."""

    start: int
    end: int
    """Index just past the closing parenthesis."""
    name: str
    source: str


def closing(text: str, open_index: int, limit: int = _MAX_CALL) -> int | None:
    """The index of the bracket closing the one at ``open_index`` (quotes respected)."""
    depth = 0
    quote: str | None = None
    index = open_index
    stop = min(len(text), open_index + limit)
    while index < stop:
        char = text[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def call_spans(text: str) -> list[CallSpan]:
    """Every ``name(...)`` with balanced brackets, outermost first where they nest."""
    spans: list[CallSpan] = []
    for match in _CALL_START.finditer(text):
        end = closing(text, match.end() - 1)
        if end is None:
            continue
        spans.append(CallSpan(match.start(), end + 1, match[1], text[match.start() : end + 1]))
    return spans


def placeholder(word: str) -> bool:
    """Whether a command-line word is a placeholder: upper case (``TEXT...``,
    ``FILE.csv``) or optional (``[-i]``)."""
    return bool(re.fullmatch(r"[A-Z][A-Z_0-9]*(\.\w+)?(\.\.\.)?|\[.*\]", word))
