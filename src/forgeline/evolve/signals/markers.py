"""TODO/FIXME markers in the repository's tracked source files: one signal per marker."""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding, Probe

#: Files whose markers count: source code and its configuration, not prose.
SOURCE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".ts",
        ".tsx",
        ".jsx",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".java",
        ".kt",
        ".rb",
        ".sh",
        ".toml",
        ".cfg",
        ".ini",
        ".yaml",
        ".yml",
    ]
)
MAX_BYTES = 1_000_000


def todo_markers(probe: Probe) -> Finding:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, probe.markers)) + r")\b[:(\s]")
    finding = Finding()
    for path in probe.files:
        if PurePosixPath(path).suffix not in SOURCE_SUFFIXES:
            continue
        file = probe.root / path
        try:
            if file.is_symlink() or file.stat().st_size > MAX_BYTES:
                continue
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            match = pattern.search(line)
            if match is None:
                continue
            finding.count += 1
            said = line.strip()[:300]
            digest = hashlib.sha1(said.encode()).hexdigest()[:10]
            finding.signals.append(
                Signal(
                    kind="todo",
                    fingerprint=f"todo:{path}:{digest}",
                    target_module=path,
                    summary=f"{match[1]} in {path}:{number}: {said}"[:500],
                    request=(
                        f"Resolve this {match[1]} marker in {path} (line {number}):\n"
                        f"    {said}\nDo what it asks, or remove it where it no longer "
                        "applies; add a test for behaviour you change, and keep every test "
                        "passing."
                    ),
                    locations=(f"{path}:{number}",),
                    priority=KIND_PRIORITY["todo"],
                )
            )
    return finding
