"""The test designer: short sets of asserts written from the request alone.

The designer never sees a candidate. Its tests vote among the candidates (``agreement``)
and never gate one: a small model's expected values are often wrong. Each set it writes
is a block of statements, cut into one test per assert (``snippets.check_units``: each
assert with the statements before it), so every assert votes on its own.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Collection

from forgeline.spec.asking import AnyModel, ModelAnswer, ask
from forgeline.spec.checks import tests_file
from forgeline.spec.model import Spec, SpecModel
from forgeline.spec.snippets import asserts_of, check_units, snippets

DESIGNER_INSTRUCTIONS = """You are a test designer. From the request alone, write two or \
three short sets of Python asserts that check what the request asks for: normal cases, \
edge cases and errors it names. Use the names the request gives; call its functions and \
classes directly (they are already imported). Helpers you may use: run(script, *args) \
runs `python script args` in a fresh directory and returns a CompletedProcess (.stdout, \
.stderr, .returncode); http(method, path, body=None) returns (status, body) from the web \
service, started for you; for an error, write: with pytest.raises(ValueError): f(x). \
Separate the sets by a blank line, inside one ```python block. Write only asserts and \
the lines they need."""

#: Sets taken from one answer at most.
MAX_SETS = 4
#: Tests taken from one set at most.
MAX_TESTS_PER_SET = 8


class DesignedTest(SpecModel):
    """One designer test: its pytest id and its code."""

    test_id: str
    code: str


class DesignedTests(SpecModel):
    """One designer answer, as a test file."""

    path: str
    source: str
    tests: tuple[DesignedTest, ...]
    answer: ModelAnswer | None = None


def designer_prompt(spec: Spec) -> str:
    interface = spec.render()
    return f"Request:\n{spec.request}" + (f"\n\nInterface:\n{interface}" if interface else "")


def _imports_own(node: ast.Import | ast.ImportFrom, own: Collection[str]) -> bool:
    """Whether ``node`` imports from one of the request's modules (``own``)."""
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in own
    return any(alias.name.split(".")[0] in own for alias in node.names)


def designer_blocks(block: str, own: Collection[str] = ()) -> list[str]:
    """The sets of asserts in one block of a designer's answer. Small models wrap them in
    ``def test_...():`` (each body is a set) and write the program too: a definition
    other than a test would replace the candidate's code, so it is dropped, and so are
    imports from the request's modules ``own`` (its names are looked up there). Other
    imports stay: ``from fastapi.testclient import TestClient`` is what a FastAPI
    service's test needs."""
    body = ast.parse(block).body

    def source(node: ast.stmt) -> str:
        return ast.get_source_segment(block, node) or ast.unparse(node)

    imports = [
        source(n)
        for n in body
        if isinstance(n, ast.Import | ast.ImportFrom) and not _imports_own(n, own)
    ]
    sets = [
        "\n".join(source(n) for n in node.body)
        for node in body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    ]
    rest = [
        n
        for n in body
        if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not isinstance(n, ast.Import | ast.ImportFrom)
    ]
    if rest:
        sets.insert(0, "\n".join(source(n) for n in rest))
    # every set gets the block's imports: each becomes tests of its own
    return ["\n".join([*imports, textwrap.dedent(s)]) for s in sets if s.strip()]


def read_designed(answer: str, spec: Spec, index: int) -> DesignedTests:
    """The tests in designer answer number ``index`` (file ``test_designer_<index>.py``)."""
    path = f"test_designer_{index}.py"
    bodies: list[tuple[str, str]] = []
    own = {m.module.split(".")[0] for m in spec.modules}
    blocks = [b for snippet in snippets(answer) for b in designer_blocks(snippet, own)]
    for set_number, block in enumerate(blocks[:MAX_SETS], 1):
        units = [u for u in check_units(block) if asserts_of(u)]
        for number, code in enumerate(units[:MAX_TESTS_PER_SET], 1):
            bodies.append((f"test_designer_{index}_{set_number}_{number}", code))
    tests = tuple(DesignedTest(test_id=f"{path}::{name}", code=code) for name, code in bodies)
    return DesignedTests(path=path, source=tests_file(spec, bodies), tests=tests)


async def design_tests(
    model: AnyModel,
    spec: Spec,
    index: int,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    timeout: float | None = None,
) -> DesignedTests:
    """Designer answer number ``index``, from the request and the spec's interface only."""
    answer = await ask(
        model,
        DESIGNER_INSTRUCTIONS,
        designer_prompt(spec),
        temperature=temperature,
        seed=seed,
        timeout=timeout,
    )
    return read_designed(answer.text, spec, index).model_copy(update={"answer": answer})
