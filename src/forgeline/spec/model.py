"""What a request says the program must be: its interface and its literal examples.

A ``Spec`` holds facts read from the request text (``spec.extractor``): the files it
names, the functions and classes with the parameters it states, the command lines and web
routes it gives, and trials, asserts built from the literal examples it quotes. It never
holds a guess about behaviour the request does not spell out. ``spec.checks`` turns it
into pytest files, the hard filter every candidate answer must pass.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SpecModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Param(SpecModel):
    """A parameter as the request states it: ``name: annotation = default``."""

    name: str
    annotation: str | None = None
    default: str | None = None
    """The default's source text, None when the request states none."""
    kind: Literal["positional", "var_positional", "keyword_only", "var_keyword"] = "positional"

    def render(self) -> str:
        star = {"var_positional": "*", "var_keyword": "**"}.get(self.kind, "")
        text = star + self.name + (f": {self.annotation}" if self.annotation else "")
        if self.default is not None:
            text += f" = {self.default}" if self.annotation else f"={self.default}"
        return text


class CallableSpec(SpecModel):
    """A function, method or class the request names with a call signature."""

    name: str
    module: str
    """The module (``slugify`` for ``slugify.py``) it belongs to: the file named last
    before it in the request, else the first file named."""
    kind: Literal["function", "class"]
    params: tuple[Param, ...] | None = None
    """None when the request names it without parentheses (``a class EventBus``)."""
    returns: str | None = None

    def render(self) -> str:
        prefix = "class " if self.kind == "class" else ""
        if self.params is None:
            return f"{prefix}{self.name}"
        text = f"{prefix}{self.name}({', '.join(p.render() for p in self.params)})"
        return text + (f" -> {self.returns}" if self.returns else "")


class ModuleSpec(SpecModel):
    """A Python file the request names."""

    path: str
    """Relative to the repository root, as the request writes it (``todo.py``)."""
    importable: bool
    """True when the request names functions or classes in it: it must import. A file
    named only as a script (``python wc.py``) must compile."""

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


class CommandSpec(SpecModel):
    """A command line the request gives, as written (``python todo.py add TEXT...``)."""

    script: str
    args: tuple[str, ...]
    """The words after the script; upper-case words are placeholders."""

    def render(self) -> str:
        return shlex.join(("python", self.script, *self.args))


class RouteSpec(SpecModel):
    """A web route the request names: ``GET /health answers 200``."""

    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"]
    path: str
    status: int | None = None

    def render(self) -> str:
        return f"{self.method} {self.path}" + (f" -> {self.status}" if self.status else "")


class ServerSpec(SpecModel):
    """How a test starts the web service: a factory the request names (``make_server(host,
    port)``, bound but not serving), its command line (``python server.py --port N``), or
    the module-level application object of a framework it names (``app = FastAPI()``),
    called in the test's process through the framework's test client."""

    module: str | None = None
    factory: str | None = None
    app: str | None = None
    params: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    """``(script, *args)`` with ``{port}`` where the port goes."""


class Trial(SpecModel):
    """An example the request quotes, as Python statements ending in an assert.

    The code uses the request's names and the test helpers (``run``, ``http``; see
    ``spec.checks``). ``source`` says who wrote it: a pattern of ``spec.extractor`` or a
    model that was only allowed to copy the example (``spec.copier``)."""

    code: str
    source: Literal["pattern", "model"]
    quote: str
    """The words of the request it was read from."""


class Spec(SpecModel):
    """Everything checkable that a request states."""

    request: str
    modules: tuple[ModuleSpec, ...] = ()
    callables: tuple[CallableSpec, ...] = ()
    commands: tuple[CommandSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    server: ServerSpec | None = None
    trials: tuple[Trial, ...] = ()
    packages: tuple[str, ...] = ()
    """PyPI packages the request names (``with FastAPI``, ``the requests library``) and
    those its named parts need (FastAPI's ``TestClient`` needs httpx): declared and
    installed before any candidate is checked."""
    notes: tuple[str, ...] = Field(
        default=(), description="What the extractor saw but could not check, and why."
    )

    @property
    def digest(self) -> str:
        """A short content hash, for records and for telling specs apart."""
        # a spec naming no package keeps the digest it had before packages were read
        exclude = {"request"} if self.packages else {"request", "packages"}
        text = self.model_dump_json(exclude=exclude)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def checkable(self) -> bool:
        """Whether there is anything to check at all."""
        return bool(self.modules or self.callables or self.trials)

    def with_trials(self, trials: tuple[Trial, ...]) -> Spec:
        """This spec with ``trials`` added (duplicates of its own left out)."""
        known = {t.code for t in self.trials}
        new = tuple(t for t in trials if t.code not in known)
        return self.model_copy(update={"trials": self.trials + new})

    def render(self) -> str:
        """The spec as a short text for a prompt: the interface a candidate must have and
        the examples it must satisfy."""
        lines: list[str] = []
        if self.modules:
            lines.append("Files: " + ", ".join(m.path for m in self.modules))
        if self.packages:
            lines.append("Packages installed: " + ", ".join(self.packages))
        for c in self.callables:
            lines.append(f"- in {c.module}.py: {c.render()}")
        for command in self.commands:
            lines.append(f"- command line: {command.render()}")
        for route in self.routes:
            lines.append(f"- route: {route.render()}")
        if self.trials:
            lines.append("Examples it must satisfy:")
            lines.extend(f"    {line}" for t in self.trials for line in t.code.splitlines())
        return "\n".join(lines)
