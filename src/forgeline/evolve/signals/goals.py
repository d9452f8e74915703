"""Goals a person writes in ``.forgeline/goals.md``: one signal per top-level list item.

```
# Goals
- Add a --json option to `todo.py list`.
  priority: 9
  module: todo.py
- Explain the storage format in the README. (priority: 4)
```

An item's ``priority:`` (1-10, default 8) and ``module:`` (a repository path, default the
whole repository, ``.``) may be indented lines or a trailing ``(priority: N, module: X)``.
They are passed to the ``RSITask`` as written, so a goal with a bad one is rejected with
the reason, and the other goals go on.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding

_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+(.*)$")
_ATTRIBUTE = re.compile(r"^\s*(priority|module)\s*:\s*(.+?)\s*$", re.IGNORECASE)
_TRAILING = re.compile(r"\(\s*((?:priority|module)\s*:[^()]*)\)\s*$", re.IGNORECASE)


def parse_goals(text: str) -> list[tuple[str, dict[str, str]]]:
    """The goals in ``text``: each goal's words and the attributes given for it."""
    goals: list[tuple[list[str], dict[str, str]]] = []
    for line in text.splitlines():
        item = _ITEM.match(line)
        if item is not None:
            goals.append(([item[1].strip()], {}))
            continue
        if not goals or not line.strip() or not line[:1].isspace():
            continue
        attribute = _ATTRIBUTE.match(line)
        if attribute is not None:
            goals[-1][1][attribute[1].lower()] = attribute[2]
        else:
            goals[-1][0].append(line.strip())
    parsed: list[tuple[str, dict[str, str]]] = []
    for words, attributes in goals:
        text = " ".join(words).strip()
        trailing = _TRAILING.search(text)
        if trailing is not None:
            text = text[: trailing.start()].strip()
            for part in trailing[1].split(","):
                key, _, value = part.partition(":")
                if key.strip().lower() in ("priority", "module") and value.strip():
                    attributes.setdefault(key.strip().lower(), value.strip())
        if text:
            parsed.append((text, attributes))
    return parsed


def goals(path: Path | None) -> Finding:
    if path is None or not path.is_file():
        return Finding()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Finding(notes=[f"goal: cannot read {path.name}: {exc}"])
    finding = Finding()
    for goal, attributes in parse_goals(text):
        finding.count += 1
        digest = hashlib.sha1(" ".join(goal.split()).encode()).hexdigest()[:12]
        given = {"target_module": attributes["module"]} if "module" in attributes else {}
        priority = KIND_PRIORITY["goal"]
        if "priority" in attributes:
            given["priority"] = attributes["priority"]
            if attributes["priority"].isdigit():
                priority = int(attributes["priority"])
        finding.signals.append(
            Signal(
                kind="goal",
                fingerprint=f"goal:{digest}",
                target_module=attributes.get("module", "."),
                summary=f"goal: {goal}"[:500],
                request=f"{goal}\n\nKeep every existing test passing.",
                locations=(".forgeline/goals.md",),
                priority=priority,
                given=given,
            )
        )
    return finding
