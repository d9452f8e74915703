"""A spec as pytest files: interface checks and trial tests, the hard filter on candidates.

``spec_suite(spec)`` writes two files, each with its helpers (``spec.helpers``):

- ``test_spec_interface.py``: every named file exists and compiles (and imports, when the
  request names functions or classes in it); every named function and class exists in
  its module (a method: on a class of the module) and accepts the stated parameters; the
  command lines run without a Python traceback; the web service answers every route.
- ``test_spec_examples.py``: one test per trial (the request's literal examples).

``tests_file`` does the same for any list of test bodies (the designer's tests): the
names a body uses that it does not define are looked up in the request's modules.
"""

from __future__ import annotations

import ast
import builtins
import re
import shlex
import textwrap
from collections.abc import Sequence
from typing import Literal

from forgeline.spec.helpers import HELPER_NAMES, HELPERS, IMPORTS
from forgeline.spec.model import Spec, SpecModel
from forgeline.spec.spans import placeholder

INTERFACE_FILE = "test_spec_interface.py"
EXAMPLES_FILE = "test_spec_examples.py"
#: Seconds each generated test may run.
TEST_LIMIT = 20

#: What a command-line placeholder is replaced by when the interface check runs it; a
#: command with any other placeholder is not run (the value could not be guessed).
PLACEHOLDER_VALUES = {
    "TEXT": "milk",
    "WORD": "milk",
    "WORDS": "milk",
    "TITLE": "milk",
    "MESSAGE": "milk",
    "MSG": "milk",
    "KEY": "milk",
    "PATTERN": "alpha",
    "NAME": "ada",
    "EMAIL": "ada@example.org",
    "N": "1",
    "NUMBER": "1",
    "COUNT": "1",
    "SCORE": "1",
    "ID": "1",
    "EXPRESSION": "1 + 2",
}


#: A request's command that stores what it is given (``add TEXT``), and one that shows
#: what is stored (``list``): the round-trip check runs one, then the other.
STORING = frozenset({"add", "append", "create", "insert", "new", "push", "put", "record", "save"})
LISTING = frozenset({"all", "list", "ls", "show", "view"})
#: The value the round trip stores, for a placeholder of these kinds.
STORED = "kale"
TEXTUAL = frozenset({"TEXT", "WORD", "WORDS", "TITLE", "MESSAGE", "MSG", "ITEM", "TASK", "NOTE"})


class SpecCheck(SpecModel):
    """One generated test: its pytest id and what it checks."""

    test_id: str
    kind: Literal["interface", "example"]
    label: str


def command_values(args: Sequence[str]) -> tuple[str, ...] | None:
    """The arguments the interface check runs a command with, or None when a
    placeholder's value cannot be known."""
    out: list[str] = []
    for index, word in enumerate(args):
        if word.startswith("["):
            continue
        if not placeholder(word):
            out.append(word)
            continue
        name = word.removesuffix("...")
        stem, _, suffix = name.partition(".")
        if stem in ("FILE", "PATH", "DB"):
            after_flag = index > 0 and args[index - 1].startswith("-")
            out.append("data.json" if after_flag else f"input.{suffix or 'txt'}")
        elif stem in PLACEHOLDER_VALUES:
            out.append(PLACEHOLDER_VALUES[stem])
        else:
            return None
    return tuple(out)


def round_trip(spec: Spec) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """``(script, storing args, listing args)`` where the request names a command that
    stores text (``add TEXT...``) and one of the same script that shows what is stored
    without a value (``list``); None otherwise."""
    for storing in spec.commands:
        args = storing.args
        if not args or args[0] not in STORING:
            continue
        textual = [
            i for i, word in enumerate(args) if word.removesuffix("...").strip("[]") in TEXTUAL
        ]
        values = command_values(args)
        if not textual or values is None:
            continue
        stored = tuple(STORED if i in textual else word for i, word in enumerate(args))
        stored = tuple(w for w in stored if not w.startswith("["))
        for listing in spec.commands:
            shows = listing.args[:1] and listing.args[0] in LISTING
            if listing.script == storing.script and shows and not _holes(listing.args):
                return storing.script, stored, listing.args
    return None


def _holes(args: Sequence[str]) -> bool:
    return command_values(args) != tuple(args)


def behaviour(spec: Spec) -> list[str]:
    """What the interface checks run beyond the names, as lines for a prompt: a program
    told how a user's first commands meet it gets them right more often than one that
    must guess (the two checks below each caught a real model's answer)."""
    lines: list[str] = []
    needs_value = [c for c in spec.commands if _holes(c.args)]
    first = [c for c in spec.commands if not _holes(c.args) and "--port" not in c.args]
    if first and needs_value:
        shown = ", ".join(f"`{c.render()}`" for c in first)
        lines.append(f"- {shown} works in a new, empty directory, before any other command")
    trip = round_trip(spec)
    if trip is not None:
        script, storing, listing = trip
        lines.append(
            f"- after `{shlex.join(('python', script, *storing))}`, "
            f"`{shlex.join(('python', script, *listing))}` (a new process) prints {STORED}"
        )
    return lines


def described(spec: Spec) -> str:
    """The spec for a prompt that writes the program: its interface and examples
    (``Spec.render``) and the behaviour the checks run."""
    return "\n".join(filter(None, [spec.render(), *behaviour(spec)]))


#: A placeholder in a route's path: an upper-case word, ``{name}`` or ``<name>``.
PATH_HOLE = re.compile(r"\b[A-Z][A-Z_0-9]*\b|[{<]")


def route_path(path: str) -> str:
    """``path`` with its placeholders (upper-case words) replaced by plain values."""
    return re.sub(
        r"\b[A-Z][A-Z_0-9]*\b",
        lambda m: "1" if m[0] in ("N", "ID", "NUMBER") or len(m[0]) == 1 else "x",
        path,
    )


def free_names(code: str) -> list[str]:
    """Names ``code`` reads but neither defines nor gets from builtins or the helpers,
    in order of first use."""
    tree = ast.parse(code)
    stored: set[str] = set()
    loaded: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.append(node.id)
            else:
                stored.add(node.id)
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            stored.add(node.name)
        elif isinstance(node, ast.ExceptHandler):
            stored.add(node.name or "")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            stored.update((a.asname or a.name).split(".")[0] for a in node.names)
    known = stored | set(dir(builtins)) | HELPER_NAMES
    return [n for n in dict.fromkeys(loaded) if n not in known]


def test_body(code: str) -> str:
    """``code`` with the names it uses from the request's modules looked up first."""
    lookups = [f'{name} = find("{name}")' for name in free_names(code)]
    return "\n".join([*lookups, code.strip()])


def _header(spec: Spec) -> str:
    importable = [m.module for m in spec.modules if m.importable]
    others = [m.module for m in spec.modules if not m.importable]
    server = spec.server.model_dump(exclude_none=True) if spec.server else None
    return "\n".join(
        [
            '"""Generated by forgeline from the request; see forgeline.spec."""',
            "",
            *IMPORTS,
            "",
            "ROOT = Path(__file__).resolve().parent",
            f"MODULES = {importable + others!r}",
            f"SERVER = {server!r}",
            f"LIMIT = {TEST_LIMIT}",
        ]
    )


def tests_file(spec: Spec, bodies: Sequence[tuple[str, str]]) -> str:
    """A pytest file with the helpers and one test per ``(name, code)``."""
    parts = [_header(spec), HELPERS.strip("\n")]
    for name, code in bodies:
        body = textwrap.indent(test_body(code), "    ")
        parts.append(f"def {name}():\n{body}")
    return "\n\n\n".join(parts) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower()[:40]


def interface_bodies(spec: Spec) -> list[tuple[str, str, str]]:
    """``(test name, label, code)`` for each interface check."""
    out: list[tuple[str, str, str]] = []

    def add(short: str, label: str, code: str) -> None:
        out.append((f"test_interface_{len(out) + 1}_{_slug(short)}", label, code))

    for module in spec.modules:
        verb = "imports" if module.importable else "compiles"
        add(
            f"file {module.module}",
            f"{module.path} {verb}",
            f"check_file({module.path!r}, {module.importable})",
        )
    for c in spec.callables:
        params = None
        if c.params is not None:
            params = [(p.name, p.kind, p.default) for p in c.params]
        add(
            f"signature {c.name}",
            f"{c.module}.{c.name} accepts the stated parameters",
            f"check_callable({c.module!r}, {c.name!r}, {c.kind!r}, {params!r})",
        )
    # the commands that need no value first, as a user's first run meets them (and the
    # deployer's smoke run): `list` in a fresh directory, before any `add` made a file
    commands = sorted(spec.commands, key=lambda c: _holes(c.args))
    runnable: list[tuple[str, tuple[str, ...]]] = []
    for command in commands:
        values = command_values(command.args)
        if values is not None and "--port" not in command.args:
            runnable.append((command.script, values))
    if runnable:
        add(
            "commands",
            "the command lines run without a traceback and do something",
            f"check_commands({runnable!r})",
        )
    trip = round_trip(spec)
    if trip is not None:
        script, storing, listing = trip
        add(
            "round trip",
            f"what `{' '.join(storing[:1])}` stores, `{' '.join(listing)}` shows",
            f"check_round_trip({script!r}, {storing!r}, {listing!r}, {STORED!r})",
        )
    if spec.server is not None and spec.routes:
        # a path with no placeholder (the query aside) names a route that must exist: a
        # 404 or 405 there means the service lacks it (`/items/KEY` may 404 for a key)
        routes = list(
            dict.fromkeys(
                (r.method, route_path(r.path), not PATH_HOLE.search(r.path.split("?")[0]))
                for r in spec.routes
            )
        )
        add("routes", "every route answers", f"check_routes({routes!r})")
    return out


def spec_suite(
    spec: Spec, names: tuple[str, str] = (INTERFACE_FILE, EXAMPLES_FILE)
) -> tuple[dict[str, str], tuple[SpecCheck, ...]]:
    """The spec's test files by path (``names``: the interface checks' file and the
    trials'), and the checks they hold."""
    interface_file, examples_file = names
    files: dict[str, str] = {}
    checks: list[SpecCheck] = []
    interface = interface_bodies(spec)
    if interface:
        files[interface_file] = tests_file(spec, [(n, code) for n, _, code in interface])
        checks += [
            SpecCheck(test_id=f"{interface_file}::{n}", kind="interface", label=label)
            for n, label, _ in interface
        ]
    if spec.trials:
        bodies = [(f"test_example_{i}", t.code) for i, t in enumerate(spec.trials, 1)]
        files[examples_file] = tests_file(spec, bodies)
        checks += [
            SpecCheck(test_id=f"{examples_file}::{n}", kind="example", label=t.quote[:120])
            for (n, _), t in zip(bodies, spec.trials, strict=True)
        ]
    return files, tuple(checks)
