"""Patterns that only look: ``automation_enabled_status`` and ``implementation_status``."""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import PurePosixPath

import yaml
from pydantic import Field, field_validator

from forgeline.core.events import Frozen
from forgeline.errors import WorkspaceError
from forgeline.executors.patterns.base import (
    Inputs,
    NoInputs,
    PatternContext,
    PatternExecutor,
    PatternResult,
    is_test_file,
    listing,
    read_text,
    relative_dir,
)
from forgeline.workspace.git import GitWorkspace, confined_path

# --------------------------------------------------------------------------- automation status

CI_FILES = (
    ".gitlab-ci.yml",
    ".circleci/config.yml",
    ".travis.yml",
    "azure-pipelines.yml",
    "bitbucket-pipelines.yml",
    "Jenkinsfile",
    ".drone.yml",
    ".woodpecker.yml",
)
CI_DIRS = (".github/workflows/", ".woodpecker/", ".forgejo/workflows/", ".gitea/workflows/")
TOOL_FILES = (
    "pytest.ini",
    "tox.ini",
    "noxfile.py",
    "Makefile",
    "mypy.ini",
    "ruff.toml",
    ".ruff.toml",
    ".flake8",
)
TOOL_SECTIONS = ("pytest", "ruff", "mypy", "black", "isort", "coverage", "pyright", "tox")


class AutomationStatus(Frozen):
    tests: bool
    test_files: int
    ci: tuple[str, ...]
    pre_commit: bool
    forgeline_config: bool
    tools: tuple[str, ...]
    """Tool configuration found: files (``tox.ini``) and pyproject tables (``tool.ruff``)."""
    enabled: tuple[str, ...]
    missing: tuple[str, ...]


class AutomationStatusExecutor(PatternExecutor[NoInputs]):
    name = "automation_enabled_status"
    description = "Report which automation the workspace has: tests, CI, pre-commit, config."
    inputs_model = NoInputs

    async def run(self, inputs: NoInputs, context: PatternContext) -> PatternResult:
        files = await listing(context.workspace)
        tests = [f for f in files if is_test_file(f)]
        ci = [f for f in files if f in CI_FILES or (f.startswith(CI_DIRS) and _yaml(f))]
        tools = [f for f in files if f in TOOL_FILES]
        if "pyproject.toml" in files:
            tools += [f"tool.{name}" for name in _pyproject_tools(context.workspace)]
        flags = {
            "tests": bool(tests),
            "ci": bool(ci),
            "pre-commit": ".pre-commit-config.yaml" in files,
            "forgeline": "forgeline.toml" in files,
        }
        status = AutomationStatus(
            tests=flags["tests"],
            test_files=len(tests),
            ci=tuple(ci),
            pre_commit=flags["pre-commit"],
            forgeline_config=flags["forgeline"],
            tools=tuple(tools),
            enabled=tuple(k for k, v in flags.items() if v),
            missing=tuple(k for k, v in flags.items() if not v),
        )
        summary = (
            f"enabled: {', '.join(status.enabled) or 'nothing'}; "
            f"missing: {', '.join(status.missing) or 'nothing'}"
        )
        return PatternResult(pattern=self.name, summary=summary, report=status.model_dump())


def _yaml(path: str) -> bool:
    return path.endswith((".yml", ".yaml"))


def _pyproject_tools(workspace: GitWorkspace) -> list[str]:
    try:
        tool = tomllib.loads(read_text(workspace, "pyproject.toml") or "").get("tool", {})
    except tomllib.TOMLDecodeError:
        return []
    return [name for name in TOOL_SECTIONS if isinstance(tool, dict) and name in tool]


# --------------------------------------------------------------------------- implementation


class ImplementationStatusInputs(Inputs):
    files: tuple[str, ...] = Field(min_length=1, description="The planned files.")
    tests_dir: str | None = Field(
        default=None, description="Only count test files under this directory."
    )

    @field_validator("tests_dir")
    @classmethod
    def _dir(cls, value: str | None) -> str | None:
        return None if value is None else relative_dir(value)


class FileStatus(Frozen):
    path: str
    exists: bool
    parses: bool | None
    """None: a kind of file forgeline does not parse (or a missing file)."""
    error: str | None = None
    is_test: bool = False
    tests: tuple[str, ...] = ()
    """Test files that import it (Python) or name it (other files)."""

    @property
    def done(self) -> bool:
        return self.exists and self.parses is not False and (self.is_test or bool(self.tests))


class ImplementationStatus(Frozen):
    files: tuple[FileStatus, ...]
    done: int
    total: int


class ImplementationStatusExecutor(PatternExecutor[ImplementationStatusInputs]):
    name = "implementation_status"
    description = "Report per planned file whether it exists, parses and has tests."
    inputs_model = ImplementationStatusInputs

    def check(self, inputs: ImplementationStatusInputs, context: PatternContext) -> list[str]:
        problems: list[str] = []
        for path in inputs.files:
            try:
                confined_path(context.workspace.path, path)
            except WorkspaceError as exc:
                problems.append(str(exc))
        return problems

    async def run(
        self, inputs: ImplementationStatusInputs, context: PatternContext
    ) -> PatternResult:
        workspace = context.workspace
        files = await listing(workspace)
        tests_dir = inputs.tests_dir
        test_files = [
            f
            for f in files
            if is_test_file(f) and (tests_dir is None or f.startswith(f"{tests_dir}/"))
        ]
        sources = {t: read_text(workspace, t) or "" for t in test_files}
        imported = {t: _imports(text) for t, text in sources.items()}
        statuses = []
        for path in inputs.files:
            rel = PurePosixPath(path.replace("\\", "/")).as_posix()
            text = read_text(workspace, rel)
            parses, error = (None, None) if text is None else _parse_problem(rel, text)
            modules = _module_names(rel)
            tests = tuple(
                t
                for t in test_files
                if t != rel
                and (
                    (modules & imported[t])
                    if rel.endswith(".py")
                    else (rel in sources[t] or PurePosixPath(rel).name in sources[t])
                )
            )
            statuses.append(
                FileStatus(
                    path=rel,
                    exists=text is not None,
                    parses=parses,
                    error=error,
                    is_test=is_test_file(rel),
                    tests=tests,
                )
            )
        done = sum(s.done for s in statuses)
        report = ImplementationStatus(files=tuple(statuses), done=done, total=len(statuses))
        return PatternResult(
            pattern=self.name,
            summary=f"{done} of {len(statuses)} planned files exist, parse and are tested",
            report=report.model_dump(),
        )


def _parse_problem(path: str, text: str) -> tuple[bool | None, str | None]:
    try:
        if path.endswith(".py"):
            ast.parse(text, filename=path)
        elif path.endswith(".toml"):
            tomllib.loads(text)
        elif path.endswith(".json"):
            json.loads(text)
        elif path.endswith((".yml", ".yaml")):
            yaml.safe_load(text)
        else:
            return None, None
    except SyntaxError as exc:
        return False, f"line {exc.lineno}: {exc.msg}"
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        return False, str(exc).splitlines()[0]
    return True, None


def _module_names(path: str) -> set[str]:
    """Dotted names a Python file can be imported as (with and without a ``src/`` root)."""
    if not path.endswith(".py"):
        return set()
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    names = {".".join(parts[i:]) for i in range(len(parts)) if parts[i:]}
    return {n for n in names if all(p.isidentifier() for p in n.split("."))}


def _imports(source: str) -> set[str]:
    """Modules a test file imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found
