"""``config_setup``: merge values into pyproject.toml, .gitignore or forgeline.toml."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, JsonValue, model_validator

from forgeline.core.events import FileWrite
from forgeline.executors._toml import TomlMergeError, merge_root_keys, merge_table
from forgeline.executors.patterns.base import (
    Inputs,
    PatternContext,
    PatternError,
    PatternExecutor,
    PatternResult,
    read_text,
)
from forgeline.llm.outputs import CodeChange

ConfigFile = Literal["pyproject.toml", ".gitignore", "forgeline.toml"]


class ConfigSetupInputs(Inputs):
    file: ConfigFile
    tool: str | None = Field(default=None, description="pyproject.toml: the [tool.<tool>] table.")
    values: dict[str, JsonValue] = Field(
        default_factory=dict, description="TOML values to merge (tables merge key by key)."
    )
    patterns: tuple[str, ...] = Field(default=(), description=".gitignore: lines to add.")

    @model_validator(mode="after")
    def _fits_file(self) -> Self:
        if self.file == ".gitignore":
            if not self.patterns or self.values or self.tool:
                raise ValueError(".gitignore takes patterns (and no values or tool)")
            if any("\n" in p or not p.strip() for p in self.patterns):
                raise ValueError("each .gitignore pattern is one non-empty line")
            return self
        if self.patterns:
            raise ValueError(f"{self.file} takes values, not patterns")
        if not self.values:
            raise ValueError(f"{self.file} needs values to write")
        if self.file == "pyproject.toml" and not self.tool:
            raise ValueError("pyproject.toml needs tool: the name of the [tool.<name>] table")
        if self.file == "forgeline.toml" and self.tool:
            raise ValueError("forgeline.toml takes no tool")
        if _has_null(self.values):
            raise ValueError("TOML has no null; leave the key out instead")
        return self


def _has_null(item: Any) -> bool:
    if item is None:
        return True
    if isinstance(item, dict):
        return any(_has_null(v) for v in item.values())
    if isinstance(item, list):
        return any(_has_null(v) for v in item)
    return False


class ConfigSetupExecutor(PatternExecutor[ConfigSetupInputs]):
    name = "config_setup"
    description = (
        "Merge values into pyproject.toml ([tool.<name>]), .gitignore or forgeline.toml, "
        "keeping the rest of the file."
    )
    inputs_model = ConfigSetupInputs

    async def run(self, inputs: ConfigSetupInputs, context: PatternContext) -> PatternResult:
        old = read_text(context.workspace, inputs.file)
        text = old or ""
        try:
            if inputs.file == ".gitignore":
                new = _merge_gitignore(text, inputs.patterns)
            elif inputs.file == "pyproject.toml":
                assert inputs.tool is not None  # checked by the model
                new = merge_table(text, ("tool", inputs.tool), inputs.values, inputs.file)
            else:
                tables = {k: v for k, v in inputs.values.items() if isinstance(v, dict)}
                plain = {k: v for k, v in inputs.values.items() if k not in tables}
                new = merge_root_keys(text, plain, inputs.file) if plain else text
                for name, table in tables.items():
                    new = merge_table(new, (name,), table, inputs.file)
        except TomlMergeError as exc:
            raise PatternError(f"{self.name}: {exc}") from exc
        if old is not None and new == old:
            return PatternResult(pattern=self.name, summary=f"{inputs.file} is already set up")
        verb = "update" if old is not None else "create"
        return PatternResult(
            pattern=self.name,
            summary=f"{verb} {inputs.file}",
            change=CodeChange(
                summary=f"{verb} {inputs.file}",
                files=(FileWrite(path=inputs.file, content=new),),
            ),
        )


def _merge_gitignore(text: str, patterns: tuple[str, ...]) -> str:
    present = {line.strip() for line in text.splitlines()}
    missing = [p.strip() for p in dict.fromkeys(patterns) if p.strip() not in present]
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{p}\n" for p in missing)
