"""Lint findings: ruff (the repository's own configuration) in the sandbox with its venv."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding, Probe, excerpt

MAX_LISTED = 30


async def lint_findings(probe: Probe) -> Finding:
    """One signal per file with ruff findings, listing them with their locations."""
    result = await probe.python(
        "-m", "ruff", "check", "--output-format", "json", "--no-cache", "--exit-zero", "."
    )
    try:
        if not result.ok:
            raise ValueError(f"exit code {result.exit_code}")
        found: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    except ValueError as exc:
        return Finding(notes=[f"lint: ruff did not run ({exc}): {excerpt(result.output, 500)}"])
    by_file: dict[str, list[str]] = defaultdict(list)
    for item in found:
        path = _relative(str(item.get("filename", "")), probe.root)
        location = item.get("location") or {}
        line = f"{path}:{location.get('row', '?')}:{location.get('column', '?')}"
        by_file[path].append(f"{line} {item.get('code') or 'error'} {item.get('message', '')}")
    finding = Finding(count=len(found))
    for path, lines in sorted(by_file.items()):
        listed = "\n".join(f"- {line}" for line in lines[:MAX_LISTED])
        more = f"\n- and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        finding.signals.append(
            Signal(
                kind="lint",
                fingerprint=f"lint:{path}",
                target_module=path,
                summary=f"{len(lines)} ruff finding(s) in {path}: {lines[0]}"[:500],
                request=(
                    f"Fix these lint findings (ruff check) in {path} without changing what "
                    f"the code does; every test must keep passing:\n{listed}{more}"
                ),
                locations=tuple(line.split(" ", 1)[0] for line in lines[:MAX_LISTED]),
                priority=KIND_PRIORITY["lint"],
            )
        )
    return finding


def _relative(filename: str, root: Path) -> str:
    path = Path(filename)
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
