"""The offline default model builds a request that needs packages: a small FastAPI
service and its tests, through every stage, with FastAPI installed into the task's venv
from wheels (re-packed from forgeline's environment, served through ``find_links``: no
index is reached)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.config import Settings
from forgeline.core.events import PackagesSynced
from forgeline.llm import local
from forgeline.runtime import open_runtime
from forgeline.workspace.venv import workspace_venv

REQUEST = (
    "Write a small web service with FastAPI in app.py: a module-level app = FastAPI() "
    'where GET /health answers {"status": "ok"} and GET /add?a=X&b=Y answers '
    '{"result": X + Y} for integers X and Y. Write pytest tests in test_app.py that use '
    "FastAPI's TestClient."
)
CHECK = """
from fastapi.testclient import TestClient
import app
client = TestClient(app.app)
assert client.get("/health").json() == {"status": "ok"}
assert client.get("/add", params={"a": 2, "b": 3}).json() == {"result": 5}
"""


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.timeout(1800)
async def test_the_local_model_builds_a_fastapi_service_with_its_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, web_wheels: Path
) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    name = os.environ.get("FORGELINE_TEST_LOCAL_MODEL", local.DEFAULT_LOCAL_MODEL)
    settings = Settings(
        local_model=name,
        mode="sequential",
        max_fix_rounds=2,
        profiles={"small": {"candidates": 2}},
        workspaces_root=tmp_path,
        store=f"sqlite:///{tmp_path / 'events.db'}",
        unsafe_no_sandbox=True,  # the sandbox when it works, else plain processes
        packages={"use_index": False, "find_links": [str(web_wheels)]},
    )
    async with open_runtime(settings, warn=print) as runtime:
        task_id = await runtime.submit(REQUEST, "ws")
        state = await runtime.run_until_settled(task_id)
        events = await runtime.store.read_stream(f"task-{task_id}")
        worktree = runtime.worktree(state).path
    trail = "\n".join(f"{e.actor} {e.type} {e.data!r:.300}" for e in events)
    assert state.status == "completed", f"{state.failure}\n{trail}"
    synced = [e.data for e in events if isinstance(e.data, PackagesSynced)]
    assert synced and "fastapi" in {p.name for p in synced[-1].packages}, trail
    # The service works with the task's own venv, outside forgeline's pipeline.
    venv = await workspace_venv(worktree)
    check = subprocess.run(
        [str(venv.python), "-c", CHECK], cwd=worktree, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
