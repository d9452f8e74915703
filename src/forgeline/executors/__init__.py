"""Coder back-ends and what makes their work safe to land.

- ``patch``: the patch engine (whole-file writes, search/replace blocks, unified diffs),
  validated (``validation``) before it counts and rolled back when it does not.
- ``adapters``: coding CLIs (aider, codex, claude) behind one ``ToolAdapter`` protocol.
- ``patterns``: deterministic pattern executors (no model) and ``router``: which plan items
  they take instead of the configured coder back-end.
- ``fixgen``: the fix generator loop (failing tests -> change -> validate -> re-test), and
  its records read back from a task's log (``fix.attempt`` events).
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
from forgeline.executors.fixgen import (
    FixAttempt,
    FixRun,
    attempts_from_log,
    fix_rate,
    generate_fix,
    run_from_log,
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
    "FixAttempt",
    "FixRun",
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
    "attempts_from_log",
    "change_fingerprint",
    "default_patterns",
    "fix_rate",
    "generate_fix",
    "plan_change",
    "revert_change",
    "route",
    "run_from_log",
]
