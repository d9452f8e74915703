"""Uncovered functions: the test suite under coverage (in the sandbox, with the venv),
and the functions of non-test modules none of whose statements ran."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from forgeline.core.evolution import KIND_PRIORITY, Signal
from forgeline.evolve.signals.probe import Finding, Probe, excerpt, is_test_file
from forgeline.runs.testrun import pytest_command

MAX_LISTED = 20


async def uncovered_functions(probe: Probe) -> Finding:
    """One signal per module with functions no test runs."""
    with tempfile.TemporaryDirectory(prefix="forgeline-evolve-") as tmp:
        data = f"--data-file={Path(tmp) / 'coverage'}"
        python = probe.mounts.python
        pytest = pytest_command(probe.root, Path(tmp), python, "-q")
        ran = await probe.spawner.run(
            [python, "-m", "coverage", "run", data, "--source=.", *pytest[1:]],
            cwd=probe.root,
            mounts=probe.mounts,
            timeout=probe.test_timeout,
        )
        report = Path(tmp) / "coverage.json"
        made = await probe.python("-m", "coverage", "json", data, "-o", str(report), "-q")
        try:
            files: dict[str, Any] = json.loads(report.read_text())["files"]
        except (OSError, ValueError, KeyError) as exc:
            detail = excerpt(made.output or ran.output, 500)
            return Finding(notes=[f"coverage: no report ({exc}): {detail}"])
    missing: dict[str, list[str]] = defaultdict(list)
    for name, info in files.items():
        path = Path(name).as_posix()
        if is_test_file(path) or path not in probe.files:
            continue
        for function, detail in (info.get("functions") or {}).items():
            summary = detail.get("summary") or {}
            if (
                function
                and summary.get("num_statements", 0) > 0
                and not summary.get("covered_lines", 0)
            ):
                missing[path].append(f"{function} (line {detail.get('start_line', '?')})")
    finding = Finding(count=sum(len(v) for v in missing.values()))
    for path, functions in sorted(missing.items()):
        listed = ", ".join(functions[:MAX_LISTED])
        finding.signals.append(
            Signal(
                kind="coverage",
                fingerprint=f"coverage:{path}",
                target_module=path,
                summary=f"{len(functions)} function(s) in {path} no test runs: {listed}"[:500],
                request=(
                    f"No test runs these functions of {path}: {listed}. Write pytest tests "
                    "for them in a test file (change the module only where a test shows a "
                    "bug), and keep every test passing."
                ),
                locations=(path,),
                priority=KIND_PRIORITY["coverage"],
            )
        )
    return finding
