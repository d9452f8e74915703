"""Merge values into TOML text without disturbing the rest of the file.

forgeline has no TOML writer among its dependencies, and rewriting a whole file would drop
its comments and layout. So a merge replaces only what it owns: the blocks of one table
(``[tool.ruff]`` and its ``[tool.ruff.*]`` subtables) are cut out and written again, merged,
where the first of them was; root keys are replaced line by line. The result is parsed
again and compared with what was asked; any difference is an error, never a silent loss.
Private to ``forgeline.executors``.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TomlMergeError", "deep_merge", "merge_root_keys", "merge_table"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = re.compile(r"^\s*\[")


class TomlMergeError(ValueError):
    """The values cannot be merged into this text safely."""


def deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``new``; nested tables merge, anything else is replaced."""
    merged = dict(base)
    for key, value in new.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- writing


def key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def value(item: Any) -> str:
    """``item`` as an inline TOML value."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }"
    if isinstance(item, Sequence):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TomlMergeError(f"{item!r} has no TOML form (TOML has no null)")


def render_table(path: Sequence[str], table: Mapping[str, Any]) -> str:
    """``[path]`` with its plain keys, then each subtable as its own ``[path.sub]``."""
    lines = ["[" + ".".join(key(p) for p in path) + "]"]
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    lines += [f"{key(k)} = {value(v)}" for k, v in table.items() if k not in subtables]
    text = "\n".join(lines) + "\n"
    for name, sub in subtables.items():
        text += "\n" + render_table([*path, name], sub)
    return text


# --------------------------------------------------------------------------- reading


def _parse(text: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlMergeError(f"{what} is not valid TOML: {exc}") from exc


def _lookup(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _header_path(line: str) -> tuple[str, ...] | None:
    """The key path of a table header line (``[a."b c"]``, ``[[a.b]]``), else None."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    try:
        doc = tomllib.loads(stripped + "\n")
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    node: Any = doc
    while isinstance(node, list) and node:
        node = node[-1]
    while isinstance(node, dict) and len(node) == 1:
        name, node = next(iter(node.items()))
        path.append(name)
        while isinstance(node, list) and node:
            node = node[-1]
    return tuple(path)


def _blocks(text: str) -> list[tuple[tuple[str, ...] | None, list[str]]]:
    """The text as (header path, lines) blocks; the first block (root keys) has None."""
    blocks: list[tuple[tuple[str, ...] | None, list[str]]] = [(None, [])]
    in_string: str | None = None
    for line in text.splitlines(keepends=True):
        header = None
        if in_string is None and _HEADER.match(line):
            header = _header_path(line)
        if header is not None:
            blocks.append((header, [line]))
        else:
            blocks[-1][1].append(line)
        for quote in ('"""', "'''"):  # track multi-line strings so "[x]" in one is not a header
            if (in_string in (None, quote)) and line.count(quote) % 2 == 1:
                in_string = None if in_string == quote else quote
    return blocks


def _check(result: str, expected: Mapping[str, Any], what: str) -> str:
    """``result`` if it parses to ``expected``; else the merge is refused."""
    try:
        ok = tomllib.loads(result) == expected
        reason = "it would change more than asked"
    except tomllib.TOMLDecodeError as exc:
        ok, reason = False, f"the result would not be valid TOML ({exc})"
    if not ok:
        raise TomlMergeError(
            f"cannot merge into {what} safely: {reason}; the table is probably also set with "
            "dotted keys or an unusual layout, so edit it by hand"
        )
    return result


# --------------------------------------------------------------------------- merging


def merge_table(text: str, path: Sequence[str], values: Mapping[str, Any], what: str) -> str:
    """``text`` with the table at ``path`` deep-merged with ``values``; the rest untouched."""
    path = tuple(path)
    doc = _parse(text, what)
    existing = _lookup(doc, path)
    if existing is not None and not isinstance(existing, Mapping):
        raise TomlMergeError(f"{'.'.join(path)} in {what} is a value, not a table")
    merged = deep_merge(existing or {}, values)
    expected = deep_merge(doc, _nest(path, merged))
    if existing is not None and merged == existing:
        return text  # already as asked

    kept: list[str] = []
    insert_at: int | None = None
    for header, lines in _blocks(text):
        if header is not None and header[: len(path)] == path:
            if insert_at is None:
                insert_at = len(kept)
            continue
        kept += lines
    rendered = render_table(path, merged)
    if insert_at is None:
        body = "".join(kept)
        if body and not body.endswith("\n"):
            body += "\n"
        result = body + ("\n" if body.strip() else "") + rendered
    else:
        result = "".join(kept[:insert_at]) + rendered + "\n" + "".join(kept[insert_at:])
        result = result.rstrip("\n") + "\n"
    return _check(result, expected, what)


def _nest(path: Sequence[str], table: Mapping[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = dict(table)
    for part in reversed(path):
        node = {part: node}
    return node


def merge_root_keys(text: str, values: Mapping[str, Any], what: str) -> str:
    """``text`` with plain (non-table) root keys set; each is one line before any header."""
    doc = _parse(text, what)
    expected = deep_merge(doc, values)
    blocks = _blocks(text)
    root = blocks[0][1]
    for name, item in values.items():
        if isinstance(item, Mapping):
            raise TomlMergeError(f"{name} is a table; merge it with merge_table")
        if name in doc and doc[name] == item:
            continue
        line = f"{key(name)} = {value(item)}\n"
        pattern = re.compile(rf"^\s*{re.escape(key(name))}\s*=")
        found = [i for i, old in enumerate(root) if pattern.match(old)]
        if found:
            old = root[found[0]]
            try:
                tomllib.loads(old)
            except tomllib.TOMLDecodeError as exc:
                raise TomlMergeError(
                    f"{name} in {what} spans several lines; edit it by hand"
                ) from exc
            root[found[0]] = line
        else:
            at = len(root)
            while at > 0 and not root[at - 1].strip():
                at -= 1
            if at and not root[at - 1].endswith("\n"):
                root[at - 1] += "\n"
            root.insert(at, line)
    if len(blocks) > 1 and root and root[-1].strip():
        root.append("\n")
    result = "".join(root) + "".join("".join(lines) for _, lines in blocks[1:])
    return _check(result, expected, what)
