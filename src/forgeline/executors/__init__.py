"""Coder back-ends and what makes their work safe to land.

- ``patch``: the patch engine (whole-file writes, search/replace blocks, unified diffs),
  validated (``validation``) before it counts and rolled back when it does not.
- ``adapters``: coding CLIs (aider, codex, claude) behind one ``ToolAdapter`` protocol.
- ``patterns``: deterministic pattern executors (no model) and ``router``: which plan items
  they take instead of the configured coder back-end.
"""

from __future__ import annotations

from forgeline.executors.adapters import (
    AdapterError,
    AdapterRequest,
    AdapterResult,
    AiderAdapter,
    ClaudeAdapter,
    CliAdapter,
    CodexAdapter,
    ToolAdapter,
    adapter_for,
)
from forgeline.executors.patch import (
    AppliedChange,
    Change,
    DiffChange,
    EditChange,
    EmptyChangeError,
    PatchError,
    SearchReplace,
    apply_change,
    change_fingerprint,
    plan_change,
    revert_change,
)
from forgeline.executors.patterns import (
    PatternContext,
    PatternError,
    PatternExecutor,
    PatternResult,
    default_patterns,
)
from forgeline.executors.router import CODER, PatternRoute, RouterError, route
from forgeline.executors.validation import PythonValidator, Validator

__all__ = [
    "CODER",
    "AdapterError",
    "AdapterRequest",
    "AdapterResult",
    "AiderAdapter",
    "AppliedChange",
    "Change",
    "ClaudeAdapter",
    "CliAdapter",
    "CodexAdapter",
    "DiffChange",
    "EditChange",
    "EmptyChangeError",
    "PatchError",
    "PatternContext",
    "PatternError",
    "PatternExecutor",
    "PatternResult",
    "PatternRoute",
    "PythonValidator",
    "RouterError",
    "SearchReplace",
    "ToolAdapter",
    "Validator",
    "adapter_for",
    "apply_change",
    "change_fingerprint",
    "default_patterns",
    "plan_change",
    "revert_change",
    "route",
]
