"""Type errors: mypy, only where the repository configures it, in the sandbox with its
venv (mypy's plugins are the project's code)."""

from __future__ import annotations

import configparser
import json
import tomllib
from collections import defaultdict
from pathlib import Path

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding, Probe, excerpt

MAX_LISTED = 30


def mypy_config(root: Path) -> tuple[bool, bool]:
    """Whether the repository configures mypy, and whether that configuration names the
    files to check (else forgeline checks ``.``)."""
    for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
        path = root / name
        if path.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read_string(path.read_text(errors="replace"))
            except configparser.Error:
                continue
            if parser.has_section("mypy"):
                return True, parser.has_option("mypy", "files")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(errors="replace")).get("tool", {})
        except tomllib.TOMLDecodeError:
            return False, False
        section = tool.get("mypy") if isinstance(tool, dict) else None
        if isinstance(section, dict):
            return True, "files" in section
    return False, False


def configured(root: Path) -> bool:
    return mypy_config(root)[0]


async def type_errors(probe: Probe) -> Finding:
    """One signal per file with mypy errors (none when mypy is not configured)."""
    used, names_files = mypy_config(probe.root)
    if not used:
        return Finding()
    args = ["-m", "mypy", "--output", "json", "--cache-dir", "/dev/null", "--no-error-summary"]
    result = await probe.python(*args, *([] if names_files else ["."]))
    by_file: dict[str, list[str]] = defaultdict(list)
    broken = result.timed_out or result.exit_code not in (0, 1)
    for raw in result.stdout.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(item, dict) or item.get("severity") != "error":
            continue
        path = str(item.get("file", "?"))
        code = f" [{item['code']}]" if item.get("code") else ""
        by_file[path].append(f"{path}:{item.get('line', '?')} {item.get('message', '')}{code}")
    if broken and not by_file:
        return Finding(notes=[f"type: mypy did not run: {excerpt(result.output, 500)}"])
    finding = Finding(count=sum(len(v) for v in by_file.values()))
    for path, lines in sorted(by_file.items()):
        listed = "\n".join(f"- {line}" for line in lines[:MAX_LISTED])
        finding.signals.append(
            Signal(
                kind="type",
                fingerprint=f"type:{path}",
                target_module=path,
                summary=f"{len(lines)} mypy error(s) in {path}: {lines[0]}"[:500],
                request=(
                    f"Fix these type errors (mypy, with the repository's configuration) in "
                    f"{path}; every test must keep passing:\n{listed}"
                ),
                locations=tuple(line.split(" ", 1)[0] for line in lines[:MAX_LISTED]),
                priority=KIND_PRIORITY["type"],
            )
        )
    return finding
