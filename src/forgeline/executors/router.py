"""Which plan items a pattern executor takes instead of the configured coder back-end.

The rule, checked in this order; the first that applies decides:

1. **Explicit request.** The item's ``description``, stripped, starts with
   ``pattern:<name>``. The rest of the description (after the name, on the same line or the
   next ones) is either empty or one JSON object: the pattern's inputs. An unknown name or
   text that is not a JSON object raises ``RouterError``: an item that asks for a pattern
   never silently goes to a model instead.

       pattern:config_setup
       {"file": ".gitignore", "patterns": [".venv/"]}

2. **A tool call named after a pattern.** A ``tool_call`` item whose ``title``, lowercased
   with spaces and hyphens read as underscores, is exactly a pattern's name
   (``"Implementation status"``, ``"automation-enabled-status"``) runs that pattern. Its
   inputs are the description when that is a JSON object, else none.

3. **Everything else** goes to the configured coder back-end: ``route`` returns ``CODER``
   (``None``).

In rules 1 and 2, a pattern whose inputs have a ``files`` field and were given none gets
the item's ``files``. ``route`` does not check the inputs further: call the executor's
``validate_inputs`` (it needs the workspace) or let ``execute`` refuse them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from forgeline.core.events import NodeKind, PlanItem
from forgeline.errors import ForgelineError
from forgeline.executors.patterns import PatternContext, PatternExecutor, default_patterns
from forgeline.workspace.git import GitWorkspace

if TYPE_CHECKING:
    from forgeline.tools.toolkit import Toolkit

__all__ = ["CODER", "PatternRoute", "RouterError", "route"]

#: What ``route`` returns for an item the configured coder back-end implements.
CODER: Final = None

_EXPLICIT = re.compile(r"\Apattern:\s*([A-Za-z0-9_\-]*)")


class RouterError(ForgelineError):
    """A plan item asks for a pattern that does not exist, or gives unreadable inputs."""


@dataclass(frozen=True)
class PatternRoute:
    """The pattern an item goes to, with its inputs and the rule that chose it."""

    executor: PatternExecutor[Any]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    rule: Literal["explicit", "tool_call"] = "explicit"
    item: PlanItem | None = None

    @property
    def name(self) -> str:
        return self.executor.name

    def context(self, workspace: GitWorkspace, tools: Toolkit | None = None) -> PatternContext:
        return PatternContext(workspace=workspace, inputs=self.inputs, item=self.item, tools=tools)


def _normalized(title: str) -> str:
    return re.sub(r"[\s\-]+", "_", title.strip().lower())


def _object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object; None if it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _with_files(
    executor: PatternExecutor[Any], inputs: dict[str, Any], item: PlanItem
) -> dict[str, Any]:
    if "files" in executor.inputs_model.model_fields and "files" not in inputs and item.files:
        return {**inputs, "files": list(item.files)}
    return inputs


def route(
    item: PlanItem, patterns: Mapping[str, PatternExecutor[Any]] | None = None
) -> PatternRoute | None:
    """The pattern that implements ``item``, or ``CODER`` (None) for the coder back-end."""
    registry = default_patterns() if patterns is None else patterns
    description = item.description.strip()

    explicit = _EXPLICIT.match(description)
    if explicit:
        name = explicit.group(1)
        executor = registry.get(name)
        if executor is None:
            known = ", ".join(sorted(registry)) or "none"
            raise RouterError(
                f"plan item {item.id!r} asks for pattern {name!r}, which does not exist "
                f"(known: {known})"
            )
        rest = description[explicit.end() :].strip()
        inputs: dict[str, Any] | None = {} if not rest else _object(rest)
        if inputs is None:
            raise RouterError(
                f"plan item {item.id!r}: the inputs after 'pattern:{name}' must be one JSON "
                f"object, got {rest[:200]!r}"
            )
        return PatternRoute(executor, _with_files(executor, inputs, item), "explicit", item)

    if item.kind == NodeKind.TOOL_CALL:
        executor = registry.get(_normalized(item.title))
        if executor is not None:
            inputs = (_object(description) if description else None) or {}
            return PatternRoute(executor, _with_files(executor, inputs, item), "tool_call", item)

    return CODER
