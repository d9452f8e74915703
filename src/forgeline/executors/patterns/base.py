"""The pattern executor base: inputs as a pydantic model, a result, shared helpers."""

from __future__ import annotations

import ast
import keyword
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from forgeline.core.events import Frozen, PlanItem
from forgeline.errors import ForgelineError
from forgeline.llm.outputs import CodeChange
from forgeline.workspace.git import GitWorkspace, confined_path

if TYPE_CHECKING:
    from forgeline.tools.toolkit import Toolkit


class PatternError(ForgelineError):
    """A pattern's inputs are invalid for this workspace, or it cannot do what was asked."""


@dataclass(frozen=True)
class PatternContext:
    """What a pattern works on: the workspace, its inputs, (optionally) the plan item and
    the stage run's web tools (the ``research`` pattern's)."""

    workspace: GitWorkspace
    inputs: Mapping[str, Any] = field(default_factory=dict)
    item: PlanItem | None = None
    tools: Toolkit | None = None


class PatternResult(Frozen):
    pattern: str
    summary: str
    change: CodeChange | None = None
    """Files to write (apply with the patch engine); None when there is nothing to write."""
    report: dict[str, Any] | None = None
    """What a looking pattern found (the model_dump of its report model)."""


InputsT = TypeVar("InputsT", bound=BaseModel)


def _errors(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(part) for part in error['loc']) or 'inputs'}: {error['msg']}"
        for error in exc.errors()
    ]


class PatternExecutor(ABC, Generic[InputsT]):
    name: ClassVar[str]
    description: ClassVar[str]
    inputs_model: type[InputsT]

    def get_schema(self) -> dict[str, Any]:
        """The JSON schema of this pattern's inputs."""
        schema = self.inputs_model.model_json_schema()
        schema["title"] = self.name
        schema["description"] = self.description
        return schema

    def validate_inputs(self, context: PatternContext) -> list[str]:
        """Everything wrong with the inputs for this workspace (empty: valid)."""
        try:
            inputs = self.inputs_model.model_validate(dict(context.inputs))
        except ValidationError as exc:
            return _errors(exc)
        return self.check(inputs, context)

    def check(self, inputs: InputsT, context: PatternContext) -> list[str]:
        """Checks of valid inputs against the workspace; none by default."""
        return []

    async def execute(self, context: PatternContext) -> PatternResult:
        problems = self.validate_inputs(context)
        if problems:
            raise PatternError(f"{self.name}: invalid inputs: " + "; ".join(problems))
        return await self.run(self.inputs_model.model_validate(dict(context.inputs)), context)

    @abstractmethod
    async def run(self, inputs: InputsT, context: PatternContext) -> PatternResult: ...


class Inputs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoInputs(Inputs):
    """This pattern takes no inputs."""


# --------------------------------------------------------------------------- helpers


def read_text(workspace: GitWorkspace, rel: str) -> str | None:
    """The whole text of a workspace file (no truncation), or None if absent."""
    target = confined_path(workspace.path, rel)
    if not target.is_file():
        return None
    return target.read_bytes().decode("utf-8", errors="replace")


async def listing(workspace: GitWorkspace) -> list[str]:
    """Tracked and untracked files, without ignored ones (``.venv``, ``.forgeline``)."""
    out = await workspace.git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return sorted({p for p in out.split("\0") if p and (workspace.path / p).is_file()})


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def identifier(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a Python identifier")
    return name


def parses(source: str, what: str, mode: Literal["exec", "eval"] = "exec") -> None:
    try:
        ast.parse(source, mode=mode)
    except SyntaxError as exc:
        raise ValueError(f"{what} does not parse: {exc.msg}") from exc


def relative_dir(value: str) -> str:
    if not value:
        return ""
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{value!r} must be a relative directory inside the workspace")
    return pure.as_posix()
