"""A runtime on a repository's own store (where ``forgeline changes --workspace REPO``
finds it), with the unsandboxed spawner and scripted models, and a daemon on it."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from click.testing import Result
from pydantic_ai.models import Model
from typer.testing import CliRunner

from forgeline.cli.app import app
from forgeline.config import Settings
from forgeline.evolve.config import EvolveConfig
from forgeline.llm.gateway import ModelRegistry
from forgeline.runtime import Runtime, open_runtime
from forgeline.sandbox.local import LocalSpawner
from tests.evolve import project

RUN_WITHIN = 300.0
"""Seconds a daemon run may take before the test fails."""


@asynccontextmanager
async def evolving(
    repo: Path, models: Mapping[str, Model] | None = None, **settings: Any
) -> AsyncIterator[Runtime]:
    config = Settings(
        workspaces_root=repo.parent,
        store=f"sqlite:///{repo / '.forgeline' / 'forgeline.db'}",
        **settings,
    )
    registry = ModelRegistry(models or project.models())  # type: ignore[arg-type]
    async with open_runtime(config, models=registry, spawner=LocalSpawner()) as runtime:
        yield runtime


def evolve_config(**values: Any) -> EvolveConfig:
    return EvolveConfig(**values)


async def within(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, RUN_WITHIN)


def cli(*args: str) -> Result:
    """``forgeline ARGS`` in process."""
    return CliRunner().invoke(app, list(args))


async def cli_async(*args: str) -> Result:
    """``forgeline ARGS`` from an async test (the command runs its own event loop)."""
    return await asyncio.to_thread(cli, *args)


def pytest_in(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def diff_sha256(repo: Path, base: str, commit: str) -> str:
    out = subprocess.run(
        ["git", "diff", base, commit], cwd=repo, capture_output=True, check=True
    ).stdout
    return hashlib.sha256(out).hexdigest()
