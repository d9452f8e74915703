"""Read a ``Spec`` out of a request's text, by patterns only: no model, no guessing.

What it reads (each only where the text states it literally):

- files: every ``name.py`` (test files aside);
- signatures: ``name(params)`` that parses as a Python parameter list
  (``slugify(text: str) -> str``, ``a class LRUCache(capacity: int)``). Left out: builtins
  called with arguments (``len(cache)``), names that are parameters of another signature
  (``clock()``), and attributes of standard-library objects the request names
  (``serve_forever()`` of ``http.server.HTTPServer``), and test functions (``test_add()``
  in quoted pytest output: they live in test files, as test files are left out of files);
- command lines: code spans starting ``python x.py``;
- routes: ``GET /path`` with the status and JSON body it ``answers``; the server factory
  (a named function taking ``host`` and ``port``) or the ``--port`` command that starts it;
- packages: the PyPI packages it names (``with FastAPI``, ``the requests library``);
- examples (``spec.examples``): calls with literal arguments and the literal they give,
  commands and what they print, routes and what they answer.

Precision comes first: a spec that a correct program fails would turn away every right
answer, so a pattern that is not sure leaves the fact out (``Spec.notes`` says what).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import shlex
import sys
from collections.abc import Iterator

from forgeline.spec.examples import find_trials
from forgeline.spec.model import (
    CallableSpec,
    CommandSpec,
    ModuleSpec,
    Param,
    RouteSpec,
    ServerSpec,
    Spec,
)
from forgeline.spec.spans import call_spans

_PY_FILE = re.compile(r"(?<![\w/.-])([A-Za-z_][\w/-]*\.py)\b")
_DOTTED = re.compile(r"(?<![\w.])([a-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH)\s+(/[^\s,;`]*)")
_TYPE_WORDS = frozenset(
    {"Any", "Optional", "Union", "Callable", "Iterable", "Sequence", "Mapping", "None"}
)
#: PyPI packages a request names, by the words that name them: a program built on one
#: needs it installed before any check runs. Only words plain English does not use
#: (``requests`` and ``click`` count only as a library). A FastAPI service comes with
#: httpx: its ``TestClient`` (the spec's route checks, and the tests a user writes) runs
#: on it.
NAMED_PACKAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, flags), name)
    for pattern, flags, name in (
        (r"\bfastapi\b", re.I, "fastapi"),
        (r"\bfastapi\b|\bTestClient\b|\bhttpx\b", re.I, "httpx"),
        (r"\bflask\b", re.I, "flask"),
        (r"\buvicorn\b", re.I, "uvicorn"),
        (r"\bpydantic\b", re.I, "pydantic"),
        (r"\bsqlalchemy\b", re.I, "sqlalchemy"),
        (r"\bbeautiful ?soup4?\b|\bbs4\b", re.I, "beautifulsoup4"),
        (r"\bpandas\b", re.I, "pandas"),
        (r"\bnumpy\b", re.I, "numpy"),
        (r"\bmatplotlib\b", re.I, "matplotlib"),
        (r"\bpyyaml\b", re.I, "pyyaml"),
        (r"`requests`|\brequests (?:library|package|module)\b", re.I, "requests"),
        (r"`click`|\b(?:with|using|on) click\b|\bclick (?:library|package)\b", re.I, "click"),
    )
)
#: Standard-library modules never imported to read their names (side effects, GUIs).
_NEVER_IMPORT = frozenset({"this", "antigravity", "idlelib", "tkinter", "turtle", "turtledemo"})


def _signature(source: str) -> ast.arguments | None:
    try:
        tree = ast.parse(f"def {source}: pass")
    except SyntaxError:
        return None
    node = tree.body[0]
    return node.args if isinstance(node, ast.FunctionDef) else None


def params_of(args: ast.arguments) -> tuple[Param, ...]:
    def text(node: ast.expr | None) -> str | None:
        return None if node is None else ast.unparse(node)

    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    out = [
        Param(name=a.arg, annotation=text(a.annotation), default=text(d))
        for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        out.append(
            Param(
                name=args.vararg.arg,
                annotation=text(args.vararg.annotation),
                kind="var_positional",
            )
        )
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(
            Param(name=a.arg, annotation=text(a.annotation), default=text(d), kind="keyword_only")
        )
    if args.kwarg:
        out.append(
            Param(name=args.kwarg.arg, annotation=text(args.kwarg.annotation), kind="var_keyword")
        )
    return tuple(out)


def _is_type(node: ast.expr) -> bool:
    if any(isinstance(n, ast.Attribute) for n in ast.walk(node)):
        return False  # "list[str]. Words" reads as an attribute
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    allowed = set(dir(builtins)) | _TYPE_WORDS
    return bool(names) and all(n in allowed or n[:1].isupper() for n in names)


def _returns(text: str, end: int) -> str | None:
    """The return annotation written after a signature (``-> list[str]``), if any."""
    match = re.match(r"\s*->\s*", text[end:])
    if match is None:
        return None
    rest = text[end + match.end() : end + match.end() + 80]
    for stop in range(len(rest), 0, -1):
        piece = rest[:stop]
        if stop < len(rest) and (rest[stop].isalnum() or rest[stop] in "_["):
            continue
        try:
            node = ast.parse(f"def f() -> {piece}: pass").body[0]
        except SyntaxError:
            continue
        if isinstance(node, ast.FunctionDef) and node.returns and _is_type(node.returns):
            return piece.strip()
    return None


def _stdlib_names(text: str) -> set[str]:
    """Attribute names of the standard-library objects the text names
    (``http.server.HTTPServer``: ``serve_forever``, ``shutdown``, ...)."""
    names: set[str] = set()
    for dotted in dict.fromkeys(m[1] for m in _DOTTED.finditer(text)):
        parts = dotted.split(".")
        top = parts[0]
        if top not in sys.stdlib_module_names or top in _NEVER_IMPORT:
            continue
        obj: object | None = None
        for count in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:count]))
            except ImportError:
                continue
            for attr in parts[count:]:
                obj = getattr(obj, attr, None)
            break
        if obj is not None:
            names.update(n for n in dir(obj) if not n.startswith("_"))
    return names


def modules(text: str) -> list[tuple[int, str]]:
    """``(position, path)`` of every Python file named, test files aside."""
    seen: dict[str, int] = {}
    for match in _PY_FILE.finditer(text):
        path = match[1]
        if not path.rsplit("/", 1)[-1].startswith("test_"):
            seen.setdefault(path, match.start())
    return [(pos, path) for path, pos in seen.items()]


def _module_at(named: list[tuple[int, str]], position: int) -> str:
    before = [path for pos, path in named if pos < position]
    path = before[-1] if before else named[0][1]
    return path.removesuffix(".py").replace("/", ".")


def signatures(text: str, named: list[tuple[int, str]]) -> list[CallableSpec]:
    """The functions and classes the text states with a parameter list (or, for a class,
    names after ``class``)."""
    found: dict[str, CallableSpec] = {}
    if not named:
        return []
    for span in call_spans(text):
        args = _signature(span.source)
        if args is None or span.name in found or span.name.startswith("test_"):
            continue  # a test function belongs to a test file, not to the program
        params = params_of(args)
        if span.name in dir(builtins) and params:
            continue  # len(cache), round(result, 2): a use, not a definition
        before = text[max(0, span.start - 6) : span.start]
        is_class = span.name[:1].isupper() or before.endswith("class ")
        found[span.name] = CallableSpec(
            name=span.name,
            module=_module_at(named, span.start),
            kind="class" if is_class else "function",
            params=params,
            returns=None if is_class else _returns(text, span.end),
        )
    for match in re.finditer(r"\bclass\s+([A-Z]\w*)\b(?!\()", text):
        found.setdefault(
            match[1],
            CallableSpec(name=match[1], module=_module_at(named, match.start()), kind="class"),
        )
    parameters = {p.name for c in found.values() for p in c.params or ()}
    foreign = _stdlib_names(text)
    return [c for c in found.values() if c.name not in parameters and c.name not in foreign]


def commands(text: str) -> list[tuple[int, CommandSpec]]:
    """``(end position, command)`` for every code span that runs a Python file."""
    out: list[tuple[int, CommandSpec]] = []
    for match in _CODE_SPAN.finditer(text):
        try:
            words = shlex.split(match[1])
        except ValueError:
            continue
        if len(words) >= 2 and words[0] in ("python", "python3") and words[1].endswith(".py"):
            out.append((match.end(), CommandSpec(script=words[1], args=tuple(words[2:]))))
    return out


def _clauses(text: str) -> Iterator[tuple[RouteSpec, str]]:
    """Each route with the text after it, up to the next route."""
    matches = list(_ROUTE.finditer(text))
    for index, match in enumerate(matches):
        stop = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        path = match[2].rstrip(".:)")
        after = text[match.end() : stop]
        status = re.match(r"[^.;]*?\banswers\s+(\d{3})\b", after)
        route = RouteSpec(
            method=match[1],
            path=path,
            status=int(status[1]) if status else None,
        )
        yield route, after


def routes(text: str) -> list[RouteSpec]:
    return list(dict.fromkeys(route for route, _ in _clauses(text)))


#: ``app = FastAPI()``, ``app = Flask(__name__)``: a framework's application object.
_APP = re.compile(r"\b([a-z_]\w*)\s*=\s*(FastAPI|Flask)\(")


def server(
    found: list[CallableSpec],
    cmds: list[CommandSpec],
    text: str,
    named: list[tuple[int, str]],
) -> ServerSpec | None:
    """How to start the web service: a factory taking ``host`` and ``port`` whose other
    parameters are paths, else a command line with ``--port``, else a framework's
    application object the request names at module level (``app = FastAPI()``)."""
    for c in found:
        names = [p.name for p in c.params or ()]
        others = [n for n in names if n not in ("host", "port")]
        if (
            c.kind == "function"
            and {"host", "port"} <= set(names)
            and all(re.search("path|file|db", n) for n in others)
        ):
            return ServerSpec(module=c.module, factory=c.name, params=tuple(names))
    for command in cmds:
        args = list(command.args)
        if "--port" in args and args.index("--port") + 1 < len(args):
            args[args.index("--port") + 1] = "{port}"
            return ServerSpec(command=(command.script, *args))
    app = _APP.search(text)
    if app is not None and named:  # (a module to find it in)
        return ServerSpec(module=_module_at(named, app.start()), app=app[1])
    return None


def packages(text: str) -> tuple[str, ...]:
    """The PyPI packages ``text`` names (``NAMED_PACKAGES``), in table order."""
    return tuple(name for pattern, name in NAMED_PACKAGES if pattern.search(text))


def one_line(text: str) -> str:
    """``text`` on one line: each line break, with the indentation around it, becomes one
    space; spaces inside a line (and so inside a quoted example) stay."""
    return re.sub(r"[ \t]*\r?\n[ \t]*", " ", text.strip())


def derive_spec(request: str) -> Spec:
    """The spec of ``request``: everything checkable it states literally."""
    text = one_line(request)
    named = modules(text)
    needs = packages(text)
    # `app = FastAPI()`, `Flask(__name__)`: the named package's class, not the request's
    found = [c for c in signatures(text, named) if c.name.lower() not in needs]
    owning = {c.module for c in found}
    cmds = commands(text)
    if needs:  # a module built on a named package that no command line runs is imported
        scripts = {c.script for _, c in cmds}
        owning |= {p.removesuffix(".py").replace("/", ".") for _, p in named if p not in scripts}
    module_specs = tuple(
        ModuleSpec(path=path, importable=path.removesuffix(".py").replace("/", ".") in owning)
        for _, path in named
    )
    route_list = routes(text)
    notes: list[str] = []
    if not named:
        notes.append("the request names no Python file: no file or signature is checked")
    service = server(found, [c for _, c in cmds], text, named) if route_list else None
    if route_list and service is None:
        notes.append("routes are named but not how to start the service: not checked")
    spec = Spec(
        request=request,
        modules=module_specs,
        callables=tuple(found),
        commands=tuple(dict.fromkeys(c for _, c in cmds)),
        routes=tuple(route_list),
        server=service,
        packages=needs,
        notes=tuple(notes),
    )
    return spec.with_trials(find_trials(text, spec, list(_clauses(text)), cmds))
