"""Run the real ``forgeline`` command in a subprocess, with the scripted todo models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.scripts.todo_project import CONFIG

ROOT = Path(__file__).resolve().parents[2]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "forgeline.toml"
    path.write_text(CONFIG)
    return path


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TODO_SCRIPT_", "FORGELINE_"))}
    base["PYTHONPATH"] = str(ROOT)
    base["COLUMNS"] = "200"
    return base | extra


def forgeline(
    *args: str, tmp_path: Path, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forgeline", *args],
        cwd=tmp_path,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, tmp_path: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "forgeline", *args],
            cwd=tmp_path,
            env=env(**extra),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"forgeline exited early ({proc.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}:\n{log.read_text()}")
        time.sleep(0.05)


def task_id_from(output: str) -> str:
    match = re.search(r"task (\w{12}) on branch", output)
    assert match, output
    return match.group(1)


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout
