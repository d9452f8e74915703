"""Trials read from a request's literal examples, by pattern.

- a call with literal arguments and the literal it gives: ``slugify("Hello, World!") ==
  "hello-world"``, ``fizzbuzz(5) gives [...]``, ``is_palindrome("hello") returns False``,
  ``returns 5 for add(2, 3)``, ``abs(Vector(3, 4)) == 5``;
- a quoted input and what it gives, for the one function that takes one ``str``
  (``"2 + 3 * 4" gives 14``);
- a command with only literal words and what it prints (```python t.py 100 --from c
  --to f` prints 212.0``);
- a route without placeholders and its stated status and JSON body (``GET /health
  answers 200 with the JSON {"status": "ok"}``), and ``any other path answers 404``.

A pattern that does not find a literal on both sides finds nothing: the model copier
(``spec.copier``) may then be asked.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import re
import tokenize
from collections.abc import Iterable, Sequence

from forgeline.spec.model import CommandSpec, RouteSpec, Spec, Trial
from forgeline.spec.spans import call_spans, closing, placeholder

_VERB = re.compile(
    r"\s*`?\s*(?:==>|==|should return|gives|returns|is|evaluates to|→|➞|=>|->)\s*`?\s*"
)
_BEFORE = re.compile(r"(?:returns|gives)\s+`?(?P<lit>[^`]{1,80}?)`?\s+for\s+`?$")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_QUOTED_VERB = re.compile(r"\s+(?:gives|is|returns|evaluates to)\s+")
_OTHER_PATH = re.compile(r"any other path answers (\d{3})(?: with (?:the JSON )?(?=\{))?")
#: A path no request names, for "any other path answers 404".
UNKNOWN_PATH = "/forgeline-no-such-path"


def is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _one_literal(piece: str, node: ast.expr) -> bool:
    """Whether ``piece`` is written as one literal: not a bare tuple (``1, 2``), not a
    scalar in parentheses (``("Venus")``, meant as a tuple), not strings run together
    (``"a" ""``, a docstring's closing quotes)."""
    if isinstance(node, ast.Tuple):
        return piece.startswith("(")
    if piece.startswith("(") and not isinstance(node, ast.List | ast.Dict | ast.Set):
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(piece).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return sum(t.type == tokenize.STRING for t in tokens) <= 1 or not isinstance(node, ast.Constant)


def literal_prefix(text: str, limit: int = 300) -> str | None:
    """The longest start of ``text`` that is one Python literal, when nothing after it
    continues an expression (``19 - 5 - 6 = 8`` is no literal 19)."""
    best: str | None = None
    text = text[:limit]
    for stop in range(1, len(text) + 1):
        if stop < len(text) and (text[stop].isalnum() or text[stop] in "_"):
            continue
        piece = text[:stop].strip()
        if not piece or piece.endswith("."):
            continue  # "== 3." ends a sentence; it is not the float 3.0
        try:
            node = ast.parse(piece, mode="eval").body
        except SyntaxError:
            continue
        if is_literal(node) and _one_literal(piece, node):
            best = piece
    if best is not None:
        after = text[text.find(best) + len(best) :].lstrip()
        if after[:1] and after[0] in "+-*/%=<>&|^@" and not after.startswith(">>>"):
            return None
    return best


def _example_call(node: ast.expr, names: set[str]) -> bool:
    """A call of the request's names (perhaps inside builtins) with literal arguments."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    if node.func.id not in names and node.func.id not in dir(builtins):
        return False
    if node.func.id in names and not (node.args or node.keywords):
        return False  # f() == x: too often a method called without its object
    values = [*node.args, *(k.value for k in node.keywords)]
    if not all(is_literal(v) or _example_call(v, names) for v in values):
        return False
    called = {
        n.func.id
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    return bool(called & names)


def _assert(call: str, expected: str) -> str:
    return f"assert {call} == {expected}"


def module_level(spec: Spec) -> set[str]:
    """The names a test can call without an object: classes, and functions of modules
    that define no class (elsewhere a lowercase name may be a method)."""
    with_class = {c.module for c in spec.callables if c.kind == "class"}
    return {c.name for c in spec.callables if c.kind == "class" or c.module not in with_class}


def call_trials(text: str, spec: Spec, spans: Sequence[tuple[int, int, str]]) -> list[Trial]:
    names = module_level(spec)
    trials: list[Trial] = []
    taken_until = -1
    for start, end, source in spans:
        if start < taken_until:
            continue  # inside an example already read
        try:
            node = ast.parse(source, mode="eval").body
        except SyntaxError:
            continue
        if not _example_call(node, names):
            continue
        verb = _VERB.match(text, end)
        expected = literal_prefix(text[verb.end() :]) if verb else None
        if verb and expected is not None:
            quote_end = text.find(expected, verb.end()) + len(expected)
            trials.append(
                Trial(code=_assert(source, expected), source="pattern", quote=text[start:quote_end])
            )
            taken_until = end
            continue
        before = _BEFORE.search(text[max(0, start - 120) : start])
        if before:
            try:
                ast.literal_eval(before["lit"])
            except (ValueError, SyntaxError):
                continue
            quote = text[start - len(before[0]) : end]
            trials.append(Trial(code=_assert(source, before["lit"]), source="pattern", quote=quote))
            taken_until = end
    return trials


def quoted_trials(text: str, spec: Spec, spans: Sequence[tuple[int, int, str]]) -> list[Trial]:
    """``"2 + 3 * 4" gives 14`` for the one function taking one ``str``."""
    names = module_level(spec)
    single = [
        c
        for c in spec.callables
        if c.kind == "function"
        and c.name in names
        and c.params is not None
        and len(c.params) == 1
        and c.params[0].kind == "positional"
        and c.params[0].annotation == "str"
    ]
    if len(single) != 1:
        return []
    name = single[0].name
    trials: list[Trial] = []
    for match in _QUOTED.finditer(text):
        if any(start <= match.start() < end for start, end, _ in spans):
            continue
        verb = _QUOTED_VERB.match(text, match.end())
        if verb is None:
            continue
        expected = literal_prefix(text[verb.end() :])
        if expected is None:
            continue
        quote = text[match.start() : verb.end() + len(expected)]
        trials.append(
            Trial(code=_assert(f"{name}({match[0]})", expected), source="pattern", quote=quote)
        )
    return trials


def command_trials(text: str, cmds: Iterable[tuple[int, CommandSpec]]) -> list[Trial]:
    """A command of literal words and what it ``prints``."""
    trials: list[Trial] = []
    for end, command in cmds:
        if any(placeholder(word) for word in command.args):
            continue
        prints = re.match(r"\s*prints\s+", text[end:])
        if prints is None:
            continue
        rest = text[end + prints.end() :]
        span = re.match(r"`([^`]+)`", rest)
        number = re.match(r"-?\d+(?:\.\d+)?(?![\w.]\w)", rest)
        output = span[1] if span else number[0] if number else None
        if not output:
            continue  # only a quoted output or a number is literal ("prints one line")
        args = ", ".join(repr(a) for a in (command.script, *command.args))
        code = f"assert run({args}).stdout.strip() == {output!r}"
        quote = f"`{command.render()}` prints {output}"
        trials.append(Trial(code=code, source="pattern", quote=quote))
    return trials


def _json_at(text: str, index: int) -> object | None:
    end = closing(text, index)
    if end is None:
        return None
    try:
        value: object = json.loads(text[index : end + 1])
    except ValueError:
        return None
    return value


def route_trials(text: str, spec: Spec, clauses: Iterable[tuple[RouteSpec, str]]) -> list[Trial]:
    """GET routes without placeholders, and ``any other path answers N``."""
    if spec.server is None:
        return []
    trials: list[Trial] = []
    for route, after in clauses:
        if route.method != "GET" or re.search(r"\b[A-Z][A-Z_0-9]*\b", route.path):
            continue
        answer = re.match(
            r"[^.;]*?\banswers\s+(?:(\d{3})\s+)?(?:with\s+)?(?:the\s+JSON\s+)?(?=\{)", after
        )
        body = _json_at(after, answer.end()) if answer else None
        status = route.status
        lines = [f"status, body = http('GET', {route.path!r})"]
        if status is not None:
            lines.append(f"assert status == {status}")
        if body is not None:
            lines.append(f"assert body == {body!r}")
        if len(lines) > 1:
            quote = f"GET {route.path}" + after[: (answer.end() if answer else 0) + 40]
            trials.append(Trial(code="\n".join(lines), source="pattern", quote=quote.strip()))
    other = _OTHER_PATH.search(text)
    if other:
        lines = [f"status, body = http('GET', {UNKNOWN_PATH!r})", f"assert status == {other[1]}"]
        body = (
            _json_at(text, other.end())
            if other.end() < len(text) and text[other.end()] == "{"
            else None
        )
        if body is not None:
            lines.append(f"assert body == {body!r}")
        trials.append(Trial(code="\n".join(lines), source="pattern", quote=other[0]))
    return trials


def find_trials(
    text: str,
    spec: Spec,
    clauses: Sequence[tuple[RouteSpec, str]],
    cmds: Sequence[tuple[int, CommandSpec]],
) -> tuple[Trial, ...]:
    """Every trial the patterns find in ``text`` (normalised whitespace), in order."""
    spans = [(s.start, s.end, s.source) for s in call_spans(text)]
    found = [
        *call_trials(text, spec, spans),
        *quoted_trials(text, spec, spans),
        *command_trials(text, cmds),
        *route_trials(text, spec, clauses),
    ]
    return tuple({t.code: t for t in found}.values())
