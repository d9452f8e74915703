"""Examples the patterns missed, copied into asserts by a model and checked against the text.

The model is asked for one thing only: to copy each example the request states into an
assert (``4 is IV`` into ``assert to_roman(4) == "IV"``). Its answer is not trusted: a
block is kept only when

- it parses, and every statement is an assignment, a call, an assert or
  ``with pytest.raises(E):`` (and it checks something);
- every literal in it (strings, numbers) occurs in the request's text, all of them close
  together (within ``WINDOW`` characters, so an input is not paired with an output from
  another sentence), and every exception it expects is named in the request;
- every name it uses is one the spec knows, a builtin, a helper (``run``, ``http``) or
  a name it assigned itself.

What is kept becomes a ``Trial`` with ``source="model"``: a hard filter like the others.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable

from forgeline.spec.asking import AnyModel, ModelAnswer, ask
from forgeline.spec.checks import free_names
from forgeline.spec.extractor import one_line
from forgeline.spec.helpers import HELPER_NAMES
from forgeline.spec.model import Spec, SpecModel, Trial
from forgeline.spec.snippets import asserts_of, check_units, raises_of, snippets

#: Literals of one example must occur within this many characters of each other.
WINDOW = 240

COPIER_INSTRUCTIONS = """You copy examples from a software request into Python asserts. \
Write one assert for each example the request states with concrete values, using only \
the values written in the request and the names it gives. Do not invent examples, do not \
write any code other than the asserts. Helpers you may use: run(script, *args) runs \
`python script args` and returns a CompletedProcess (.stdout, .returncode); http(method, \
path, body=None) returns (status, body) from the web service. For an error the request \
names, write: with pytest.raises(ValueError): f(x). Put every assert in one ```python \
block. If the request has no example that is not already listed, answer NONE."""


class CopyResult(SpecModel):
    """The copier's kept trials, what it refused and why, and the call."""

    trials: tuple[Trial, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    """``(code, reason)`` for each block left out."""
    answer: ModelAnswer | None = None


def copier_prompt(spec: Spec) -> str:
    """The request, the interface and the examples already read, for the copier."""
    known = "\n".join(t.code for t in spec.trials) or "(none)"
    return (
        f"Request:\n{spec.request}\n\nInterface:\n{spec.render() or '(none named)'}\n\n"
        f"Examples already copied (do not repeat them):\n{known}"
    )


def _literals(tree: ast.AST) -> list[str | int | float]:
    out: list[str | int | float] = []
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out.append(value)
    return out


def _positions(text: str, value: str | int | float) -> list[int]:
    if isinstance(value, str):
        if not value:
            return [-1]  # "" is everywhere
        return [m.start() for m in re.finditer(re.escape(value), text)]
    forms = {repr(value)}
    if isinstance(value, float) and value.is_integer():
        forms.add(str(int(value)))
    found: list[int] = []
    for form in forms:
        pattern = rf"(?<![\w.]){re.escape(form.lstrip('-'))}(?![\w]|\.\d)"
        found += [m.start() for m in re.finditer(pattern, text)]
    return found


def _close_together(places: list[list[int]]) -> bool:
    places = [p for p in places if p != [-1]]
    if not places:
        return True
    return any(
        all(any(abs(q - anchor) <= WINDOW for q in other) for other in places)
        for anchor in places[0]
    )


def check_copy(code: str, spec: Spec, text: str) -> str | None:
    """Why the copied ``code`` is refused, or None when it is kept."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"does not parse: {exc.msg}"
    for node in tree.body:
        allowed = isinstance(node, ast.Assign | ast.Expr | ast.Assert)
        if isinstance(node, ast.With):
            allowed = raises_of(node) is not None
        if not allowed:
            return f"a {type(node).__name__} statement is not an example"
    if not asserts_of(code):
        return "it asserts nothing"
    for found in ast.walk(tree):
        error = raises_of(found) if isinstance(found, ast.With) else None
        if error and not re.search(rf"\b{re.escape(error)}\b", text):
            return f"the request never names {error}"
    assigned = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    known = {c.name for c in spec.callables} | assigned | HELPER_NAMES | set(dir(builtins))
    unknown = [n for n in free_names(code) if n not in known]
    if unknown:
        return f"it uses {unknown[0]}, which the request does not name"
    places: list[list[int]] = []
    for value in _literals(tree):
        where = _positions(text, value)
        if not where:
            return f"{value!r} is not in the request"
        places.append(where)
    if not _close_together(places):
        return "its values are not from one place in the request"
    return None


def _quote(code: str, text: str) -> str:
    spots = [p for v in _literals(ast.parse(code)) for p in _positions(text, v)[:1] if p >= 0]
    if not spots:
        return code
    return text[min(spots) : max(spots) + 40].strip()


def read_copies(answer: str, spec: Spec) -> CopyResult:
    """The trials kept from the copier's ``answer`` (see the module's rules)."""
    text = one_line(spec.request)
    kept: list[Trial] = []
    refused: list[tuple[str, str]] = []
    known = {t.code for t in spec.trials}
    if answer.strip().strip(".").upper() == "NONE":
        return CopyResult()
    for code in (unit for block in snippets(answer) for unit in check_units(block)):
        reason = check_copy(code, spec, text)
        if reason is None and code in known:
            reason = "already a trial"
        if reason is None:
            kept.append(Trial(code=code, source="model", quote=_quote(code, text)))
            known.add(code)
        else:
            refused.append((code, reason))
    return CopyResult(trials=tuple(kept), refused=tuple(refused))


async def copy_examples(
    model: AnyModel, spec: Spec, *, seed: int = 0, timeout: float | None = None
) -> CopyResult:
    """Ask ``model`` (greedy) to copy the examples the patterns missed; keep the checked."""
    answer = await ask(
        model, COPIER_INSTRUCTIONS, copier_prompt(spec), temperature=0.0, seed=seed, timeout=timeout
    )
    result = read_copies(answer.text, spec)
    return result.model_copy(update={"answer": answer})


def with_copies(spec: Spec, results: Iterable[CopyResult]) -> Spec:
    """``spec`` with the trials the copier kept."""
    return spec.with_trials(tuple(t for r in results for t in r.trials))
