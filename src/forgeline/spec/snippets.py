"""Python snippets in a model's answer: the blocks of statements it wrote.

A small model answers "write asserts" with fenced blocks, bare lines, numbered lists or
prose around them. ``snippets`` keeps what parses: each fenced block (or, without fences,
the whole answer) split at blank lines into blocks, and a block that does not parse as a
whole is split into its lines, keeping the lines that parse on their own.
"""

from __future__ import annotations

import ast
import re

_FENCED = re.compile(r"```[\w+.-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def snippets(text: str) -> list[str]:
    """The blocks of Python statements in ``text``, in order, each one that parses."""
    bodies = _FENCED.findall(text) or [text]
    out: list[str] = []
    for body in bodies:
        for block in re.split(r"\n\s*\n", body):
            block = "\n".join(line.rstrip() for line in block.strip("\n").splitlines())
            if not block.strip():
                continue
            block = _dedent(block)
            if _parses(block):
                out.append(block)
                continue
            out.extend(line.strip() for line in block.splitlines() if _parses(line.strip()))
    return [s for s in out if s.strip() and not s.lstrip().startswith("#")]


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines)


def is_check(node: ast.stmt) -> bool:
    """An assert or ``with pytest.raises(...)``."""
    return isinstance(node, ast.Assert) or (isinstance(node, ast.With) and bool(raises_of(node)))


def asserts_of(code: str) -> list[ast.stmt]:
    """The checking statements of ``code``."""
    return [node for node in ast.parse(code).body if is_check(node)]


def raises_of(node: ast.With) -> str | None:
    """``E`` for ``with pytest.raises(E):``, else None."""
    if len(node.items) != 1:
        return None
    call = node.items[0].context_expr
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "raises"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "pytest"
        and call.args
    ):
        return ast.unparse(call.args[0])
    return None


def check_units(block: str) -> list[str]:
    """``block`` cut into one unit per check: each assert (or ``pytest.raises`` block)
    with every other statement before it, earlier checks left out, so a set of asserts
    gives one vote each and a set that builds something first keeps what it built. A
    block without a check is one unit."""
    body = ast.parse(block).body
    if not any(is_check(node) for node in body):
        return [block]
    units: list[str] = []
    setup: list[ast.stmt] = []
    for node in body:
        if is_check(node):
            units.append("\n".join(_source(block, n) for n in [*setup, node]))
        else:
            setup.append(node)
    return units


def _source(block: str, node: ast.stmt) -> str:
    return ast.get_source_segment(block, node) or ast.unparse(node)
