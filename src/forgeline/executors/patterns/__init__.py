"""Pattern executors: work that needs no model.

Each executor declares its inputs as a pydantic model; ``get_schema()`` is that model's
JSON schema, ``validate_inputs(context)`` lists what is wrong (the model's errors, then
checks against the workspace), and ``execute(context)`` returns a ``PatternResult``: a
``CodeChange`` for the patch engine to apply and the caller to commit, or a structured
``report`` when the pattern only looks. Executors read the workspace but never write it.

- ``module_creation``: a Python module with the given functions (a real body when one is
  given, else a stub raising ``NotImplementedError``) and a pytest file that imports it;
- ``config_setup``: merge values into ``pyproject.toml`` (one ``[tool.<name>]`` table),
  ``.gitignore`` (missing patterns) or ``forgeline.toml``, keeping everything else;
- ``automation_enabled_status``: which automation the workspace has (tests, CI,
  pre-commit, forgeline.toml, tool configuration);
- ``implementation_status``: per planned file, whether it exists, parses and is tested;
- ``research``: the one that reaches out: web search and fetch through the stage run's
  tools, the note ``research/<topic>.md`` with numbered references as its change.
"""

from __future__ import annotations

from typing import Any

from forgeline.executors.patterns.base import (
    NoInputs,
    PatternContext,
    PatternError,
    PatternExecutor,
    PatternResult,
)
from forgeline.executors.patterns.config_setup import ConfigSetupExecutor, ConfigSetupInputs
from forgeline.executors.patterns.module_creation import (
    FunctionSpec,
    ModuleCreationExecutor,
    ModuleCreationInputs,
)
from forgeline.executors.patterns.research import ResearchExecutor, ResearchInputs
from forgeline.executors.patterns.status import (
    AutomationStatus,
    AutomationStatusExecutor,
    FileStatus,
    ImplementationStatus,
    ImplementationStatusExecutor,
    ImplementationStatusInputs,
)

__all__ = [
    "AutomationStatus",
    "AutomationStatusExecutor",
    "ConfigSetupExecutor",
    "ConfigSetupInputs",
    "FileStatus",
    "FunctionSpec",
    "ImplementationStatus",
    "ImplementationStatusExecutor",
    "ImplementationStatusInputs",
    "ModuleCreationExecutor",
    "ModuleCreationInputs",
    "NoInputs",
    "PatternContext",
    "PatternError",
    "PatternExecutor",
    "PatternResult",
    "ResearchExecutor",
    "ResearchInputs",
    "default_patterns",
]


def default_patterns() -> dict[str, PatternExecutor[Any]]:
    """One instance of each built-in pattern, by name."""
    executors: list[PatternExecutor[Any]] = [
        ModuleCreationExecutor(),
        ConfigSetupExecutor(),
        AutomationStatusExecutor(),
        ImplementationStatusExecutor(),
        ResearchExecutor(),
    ]
    return {e.name: e for e in executors}
