"""``module_creation``: a Python module with stub or given functions and its pytest file."""

from __future__ import annotations

import ast
import textwrap
from pathlib import PurePosixPath
from typing import Self

from pydantic import Field, field_validator, model_validator

from forgeline.core.events import FileWrite
from forgeline.errors import WorkspaceError
from forgeline.executors.patterns.base import (
    Inputs,
    PatternContext,
    PatternExecutor,
    PatternResult,
    identifier,
    parses,
    relative_dir,
)
from forgeline.llm.outputs import CodeChange
from forgeline.workspace.git import confined_path


class FunctionSpec(Inputs):
    name: str
    args: tuple[str, ...] = Field(
        default=(), description='Parameters as written in Python: "path: str", "n: int = 1".'
    )
    returns: str | None = Field(default=None, description="Return annotation, e.g. 'int'.")
    docstring: str = ""
    body: str | None = Field(
        default=None, description="Python statements; none: a stub raising NotImplementedError."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return identifier(name)

    @model_validator(mode="after")
    def _code_parses(self) -> Self:
        parses(f"def f({', '.join(self.args)}): pass", f"the arguments of {self.name}")
        if self.returns is not None:
            parses(self.returns, f"the return annotation of {self.name}", "eval")
        if self.body is not None:
            parses(textwrap.dedent(self.body), f"the body of {self.name}")
        return self


class ModuleCreationInputs(Inputs):
    module: str = Field(description="Dotted module name, e.g. 'todo.store'.")
    source_root: str = Field(default="", description="'src' for a src layout; '' for none.")
    tests_dir: str = "tests"
    docstring: str = ""
    imports: tuple[str, ...] = Field(default=(), description="Import lines for the module.")
    functions: tuple[FunctionSpec, ...] = ()

    @field_validator("module")
    @classmethod
    def _module(cls, module: str) -> str:
        for part in module.split("."):
            identifier(part)
        return module

    @field_validator("source_root", "tests_dir")
    @classmethod
    def _dirs(cls, value: str) -> str:
        return relative_dir(value)

    @field_validator("imports")
    @classmethod
    def _imports(cls, imports: tuple[str, ...]) -> tuple[str, ...]:
        for line in imports:
            parses(line, f"import line {line!r}")
            if not all(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.parse(line).body):
                raise ValueError(f"{line!r} is not an import statement")
        return imports

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [f.name for f in self.functions]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"functions defined twice: {', '.join(twice)}")
        return self

    @property
    def module_path(self) -> str:
        return str(PurePosixPath(self.source_root, *self.module.split(".")).with_suffix(".py"))

    @property
    def test_path(self) -> str:
        return str(PurePosixPath(self.tests_dir, f"test_{self.module.replace('.', '_')}.py"))


def _docstring(text: str, indent: str = "") -> str:
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text = text[:-1] + '\\"'
    return textwrap.indent(f'"""{text}"""', indent).lstrip() if indent else f'"""{text}"""'


def _function(spec: FunctionSpec) -> str:
    returns = f" -> {spec.returns}" if spec.returns else ""
    lines = [f"def {spec.name}({', '.join(spec.args)}){returns}:"]
    if spec.docstring:
        lines.append("    " + _docstring(spec.docstring, "    "))
    if spec.body is not None:
        lines.append(textwrap.indent(textwrap.dedent(spec.body).strip("\n"), "    "))
    else:
        lines.append(f'    raise NotImplementedError("{spec.name} is not implemented yet")')
    return "\n".join(lines) + "\n"


class ModuleCreationExecutor(PatternExecutor[ModuleCreationInputs]):
    name = "module_creation"
    description = "Create a Python module with the given functions and a pytest file for it."
    inputs_model = ModuleCreationInputs

    def check(self, inputs: ModuleCreationInputs, context: PatternContext) -> list[str]:
        problems: list[str] = []
        for path in (inputs.module_path, inputs.test_path):
            try:
                if confined_path(context.workspace.path, path).exists():
                    problems.append(f"{path} already exists; a coder changes existing files")
            except WorkspaceError as exc:
                problems.append(str(exc))
        return problems

    async def run(self, inputs: ModuleCreationInputs, context: PatternContext) -> PatternResult:
        module_doc = inputs.docstring or f"The {inputs.module} module."
        parts = [_docstring(module_doc), "", "from __future__ import annotations", ""]
        if inputs.imports:
            parts += [*inputs.imports, ""]
        source = "\n".join(parts) + "".join(f"\n\n{_function(f)}" for f in inputs.functions)
        files = [FileWrite(path=inputs.module_path, content=source.rstrip("\n") + "\n")]
        # Packages on the way that do not exist yet get an __init__.py.
        package = PurePosixPath(inputs.source_root)
        for name in inputs.module.split(".")[:-1]:
            package = package / name
            if not (context.workspace.path / package).exists():
                files.append(FileWrite(path=str(package / "__init__.py"), content=""))
        files.append(FileWrite(path=inputs.test_path, content=_test_file(inputs)))
        for file in files:
            parses(file.content, file.path)
        made = ", ".join(f.name for f in inputs.functions) or "no functions"
        return PatternResult(
            pattern=self.name,
            summary=f"create module {inputs.module} ({made}) and {inputs.test_path}",
            change=CodeChange(summary=f"create module {inputs.module}", files=tuple(files)),
        )


def _test_file(inputs: ModuleCreationInputs) -> str:
    package, _, leaf = inputs.module.rpartition(".")
    imported = f"from {package} import {leaf}" if package else f"import {leaf}"
    lines = [f'"""Tests for {inputs.module}."""', "", "from __future__ import annotations", ""]
    lines += [imported, ""]
    tests = [
        f"\ndef test_{f.name}_is_defined() -> None:\n    assert callable({leaf}.{f.name})\n"
        for f in inputs.functions
    ]
    if not tests:
        tests = [f"\ndef test_{leaf}_imports() -> None:\n    assert {leaf}.__name__\n"]
    return "\n".join(lines) + "\n" + "\n".join(tests)
