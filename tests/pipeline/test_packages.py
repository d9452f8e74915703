"""Requests that need packages, end to end on scripted models: the architect names them,
they are declared in requirements.txt, installed into the task's venv from wheels (served
through ``find_links``, never an index), the task's tests import them, and the preview
serves with them. A denied package fails the task with the rule, a missing one with pip's
message, and two tasks of one repository keep their own versions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import CandidateChosen, PackagesSynced, SpecDerived
from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.runs.containers import validate_compose
from forgeline.runs.testrun import run_pytest
from forgeline.sandbox.local import LocalSpawner
from forgeline.selection.candidate import CANDIDATE_INSTRUCTIONS
from forgeline.selection.designer import DESIGNER_INSTRUCTIONS
from forgeline.spec.copier import COPIER_INSTRUCTIONS
from forgeline.workspace.venv import WorkspaceVenv, workspace_venv
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project
from tests.workspace.wheels import make_wheel

APP = '''"""A key-value service."""

from fastapi import FastAPI, HTTPException

app = FastAPI()
store: dict[str, str] = {}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.put("/keys/{key}")
def put(key: str, value: str) -> dict[str, str]:
    store[key] = value
    return {"key": key, "value": value}


@app.get("/keys/{key}")
def get(key: str) -> dict[str, str]:
    if key not in store:
        raise HTTPException(status_code=404, detail="no such key")
    return {"key": key, "value": store[key]}
'''

TEST_APP = """from fastapi.testclient import TestClient

from app import app

client = TestClient(app)


def test_health():
    assert client.get("/health").json() == {"status": "ok"}


def test_a_key_is_stored_and_read_back():
    assert client.put("/keys/a", params={"value": "1"}).status_code == 200
    assert client.get("/keys/a").json() == {"key": "a", "value": "1"}


def test_a_missing_key_is_404():
    assert client.get("/keys/nope").status_code == 404
"""

PLAN = {
    "summary": "A FastAPI key-value service",
    "items": [{"id": "a", "title": "service and tests", "files": ["app.py", "test_app.py"]}],
}


def architecture(*packages: tuple[str, str], run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "summary": "app.py holds the service; test_app.py tests it.",
        "decision": "FastAPI, served by uvicorn.",
        "files": [{"path": "app.py"}, {"path": "test_app.py"}],
        "run": run or {"kind": "library", "command": ["python", "-c", "import app"]},
        "packages": [{"name": name, "reason": reason} for name, reason in packages],
    }


WEB_RUN = {
    "kind": "web",
    "command": ["python", "-m", "uvicorn", "app:app", "--port", "{port}"],
    "health_path": "/health",
}
SERVICE = architecture(
    ("fastapi", "the web framework the request names"),
    ("httpx", "FastAPI's TestClient needs it"),
    ("uvicorn", "serves the app"),
    run=WEB_RUN,
)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def models(arch: Any, code: Any) -> dict[str, Any]:
    return todo_project.models(
        planner=scripted_model([PLAN]),
        architect=scripted_model([arch]),
        coder=scripted_model([code]),
    )


def files(**contents: str) -> dict[str, Any]:
    return {"summary": "code", "files": [{"path": p, "content": c} for p, c in contents.items()]}


async def test_a_fastapi_service_gets_its_packages_passes_its_tests_and_previews(
    tmp_path: Path, web_wheels: Path
) -> None:
    settings = {
        "packages": {"use_index": False, "find_links": [str(web_wheels)]},
        "deploy": {"mode": "compose_only"},
    }
    code = files(**{"app.py": APP, "test_app.py": TEST_APP})
    async with pipeline(tmp_path, models(SERVICE, code), **settings) as p:
        task_id, state = await run_task(
            p, "a FastAPI key-value service", "sequential", tmp_path / "kv"
        )
        events = await task_events(p, task_id)
        assert state.status == "completed", [e.data for e in events if e.type == "stage.failed"]
        worktree = tmp_path / "kv" / ".forgeline" / "worktrees" / task_id
        # Declared where Python projects declare them: what the request names by the spec
        # step, what the design adds by the architect, with its reason.
        requirements = (worktree / "requirements.txt").read_text()
        assert "fastapi  # named in the request" in requirements
        assert "httpx" in requirements and "uvicorn  # serves the app" in requirements
        # Installed once (by the coder's checks), recorded with versions and hashes.
        [synced] = [e for e in events if isinstance(e.data, PackagesSynced)]
        assert synced.actor == "coder"
        data = synced.data
        assert isinstance(data, PackagesSynced)
        assert data.venv == f".forgeline/venvs/{task_id}"
        pins = {pin.name: pin for pin in data.packages}
        assert {"fastapi", "starlette", "pydantic", "httpx", "uvicorn"} <= set(pins)
        wheelhouse = WorkspaceVenv.for_task(tmp_path / "kv", task_id).wheelhouse
        fastapi = pins["fastapi"]
        assert (
            fastapi.sha256 == hashlib.sha256((wheelhouse / fastapi.file).read_bytes()).hexdigest()
        )
        # The task's own tests imported FastAPI and passed.
        assert state.last_test is not None and (state.last_test.passed, state.last_test.failed) == (
            3,
            0,
        )
        # The preview serves the app with its packages and answers its health path.
        assert state.deploy is not None and state.deploy.ok and state.deploy.url
        assert get_json(state.deploy.url + "health") == {"status": "ok"}
        await p.stop_preview(task_id)
        # compose_only: deploy files for the app, with the versions its tests ran with.
        assert state.deploy.files == ("Dockerfile", "compose.yaml", ".dockerignore")
        assert state.deploy.commit == state.head
        dockerfile = (worktree / "Dockerfile").read_text()
        assert f"fastapi=={fastapi.version}" in dockerfile and "HEALTHCHECK" in dockerfile
        validate_compose(yaml.safe_load((worktree / "compose.yaml").read_text()))


async def test_a_denied_package_fails_the_task_with_the_rule(tmp_path: Path) -> None:
    arch = architecture(("pycrypto", "the request asks for it"))
    async with pipeline(tmp_path, models(arch, files(**{"app.py": "X = 1\n"}))) as p:
        task_id, state = await run_task(p, "encrypt with pycrypto", "sequential", tmp_path / "ws")
        assert state.status == "failed"
        assert "'pycrypto' is refused (deny)" in (state.failure or "")
        types = [e.type for e in await task_events(p, task_id)]
        assert "architecture.proposed" not in types  # before any code was written


async def test_a_package_that_does_not_exist_fails_with_pips_message(tmp_path: Path) -> None:
    links = tmp_path / "links"
    make_wheel(links, "tinydep", "1.0", "")
    settings = {
        "packages": {"extra_allow": ["tiny*"], "use_index": False, "find_links": [str(links)]}
    }
    arch = architecture(("tinynothing", "the request asks for it"))
    test = "def test_one():\n    assert True\n"
    code = files(**{"app.py": "X = 1\n", "test_app.py": test})
    async with pipeline(tmp_path, models(arch, code), **settings) as p:
        _, state = await run_task(p, "something with tinynothing", "sequential", tmp_path / "ws")
        assert state.status == "failed"
        reason = state.failure or ""
        assert "No matching distribution found for tinynothing" in reason
        assert "Traceback" not in reason


VERSION_TEST = """import tinylib


def test_version():
    assert tinylib.VERSION == {version}
"""


async def test_a_second_task_with_another_version_does_not_break_the_first(
    tmp_path: Path,
) -> None:
    links = tmp_path / "links"
    make_wheel(links, "tinylib", "1.0", "VERSION = 1\n")
    make_wheel(links, "tinylib", "2.0", "VERSION = 2\n")
    settings = {
        "packages": {"extra_allow": ["tiny*"], "use_index": False, "find_links": [str(links)]}
    }

    def version(messages: list[ModelMessage]) -> str:
        return "2" if "version two" in prompt_text(messages) else "1"

    def arch(messages: list[ModelMessage]) -> dict[str, Any]:
        return architecture((f"tinylib=={version(messages)}.0", "the request pins it"))

    def code(messages: list[ModelMessage]) -> dict[str, Any]:
        test = VERSION_TEST.format(version=version(messages))
        return files(**{"app.py": "import tinylib\n", "test_app.py": test})

    repository = tmp_path / "shared"
    async with pipeline(tmp_path, models(arch, code), **settings) as p:
        first, state = await run_task(p, "use tinylib version one", "sequential", repository)
        assert state.status == "completed"
        _, state = await run_task(p, "use tinylib version two", "sequential", repository)
        assert state.status == "completed"
    # The first task's tests still pass in its own venv, with its own version.
    worktree = repository / ".forgeline" / "worktrees" / first
    report = await run_pytest(
        worktree, LocalSpawner(), timeout=120, venv=await workspace_venv(worktree)
    )
    assert (report.passed, report.failed, report.errors) == (1, 0, 0), report.output


@pytest.mark.sandbox
async def test_a_fastapi_preview_starts_in_the_sandbox_with_its_packages(
    tmp_path: Path, web_wheels: Path, bwrap_ready: None
) -> None:
    from forgeline.config import PackagesConfig
    from forgeline.core.events import RunSpec
    from forgeline.runs.preview import start_preview
    from forgeline.sandbox.bwrap import BwrapSandbox
    from forgeline.workspace.declared import read_declaration
    from forgeline.workspace.sync import PackageSync
    from tests.workspace.helpers import add_worktree, git

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "i",
        cwd=repo,
    )
    worktree = add_worktree(repo, "t1")
    (worktree / "app.py").write_text(APP)
    (worktree / "requirements.txt").write_text("fastapi\nuvicorn\n")
    sandbox = BwrapSandbox()
    venv = await workspace_venv(worktree)
    config = PackagesConfig(use_index=False, find_links=(str(web_wheels),))
    await PackageSync(config, sandbox).sync(venv, read_declaration(worktree), cwd=worktree)
    result, process = await start_preview(
        RunSpec.model_validate(WEB_RUN),
        worktree,
        sandbox,
        log_dir=tmp_path,
        startup_timeout=60,
        venv=venv,
    )
    try:
        assert result.ok, result.output
        assert result.url is not None
        # Off the event loop: the sandbox's port forward is served on it.
        answer = await asyncio.to_thread(get_json, result.url + "health")
        assert answer == {"status": "ok"}
    finally:
        if process is not None:
            await process.stop(5)


SMALL_REQUEST = (
    "Write app.py, a key-value web service with FastAPI: a module-level app = FastAPI(), "
    'GET /health answers {"status": "ok"}, PUT /keys/KEY?value=V stores a value and GET '
    "/keys/KEY reads it back (404 for an unknown key). Test it with FastAPI's TestClient."
)
DESIGNED_CHECK = """```python
from fastapi.testclient import TestClient
client = TestClient(app)
assert client.get("/health").json() == {"status": "ok"}
```"""


def small_tier(answer: str) -> Model:
    """The small tier's one model: the candidates answer ``answer``, the designer writes
    a check that imports FastAPI, the copier copies nothing, and no other role is asked."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        request = messages[0]
        assert isinstance(request, ModelRequest)
        text = {
            CANDIDATE_INSTRUCTIONS: answer,
            DESIGNER_INSTRUCTIONS: DESIGNED_CHECK,
            COPIER_INSTRUCTIONS: "NONE",
        }[request.instructions or ""]
        return ModelResponse(parts=[TextPart(text)])

    return FunctionModel(respond, model_name="small-script")


async def test_a_request_naming_fastapi_gets_it_before_its_candidates_are_checked(
    tmp_path: Path, web_wheels: Path
) -> None:
    # the small tier's straight route: no architect names packages, so the spec step
    # declares the ones the request names, and every candidate is checked with them
    answer = f"app.py\n```python\n{APP}```\n\ntest_app.py\n```python\n{TEST_APP}```\n"
    model = small_tier(answer)
    roles = {r: model for r in ("planner", "architect", "coder", "fixer", "reviewer")}
    settings = {"packages": {"use_index": False, "find_links": [str(web_wheels)]}}
    async with pipeline(tmp_path, roles, profile="small", **settings) as p:
        task_id, state = await run_task(p, SMALL_REQUEST, "sequential", tmp_path / "kv")
        events = await task_events(p, task_id)
        worktree = p.worktree(state).path
    assert state.status == "completed", state.failure
    types = [e.type for e in events]
    assert "plan.created" not in types  # straight to the candidates
    [spec] = [e.data for e in events if isinstance(e.data, SpecDerived)]
    assert spec.spec["packages"] == ["fastapi", "httpx"]
    assert spec.interface == (
        "GET /health",
        "PUT /keys/KEY?value=V",
        "GET /keys/KEY",
    )  # no FastAPI()
    requirements = (worktree / "requirements.txt").read_text()
    assert "fastapi  # named in the request" in requirements and "httpx" in requirements
    # installed before the candidates ran: the designer's check and the candidate's own
    # tests imported FastAPI, passed, and landed
    [synced] = [e.data for e in events if isinstance(e.data, PackagesSynced)]
    assert isinstance(synced, PackagesSynced) and {"fastapi", "httpx"} <= {
        pin.name for pin in synced.packages
    }
    [chosen] = [e.data for e in events if isinstance(e.data, CandidateChosen)]
    assert chosen.spec_ok and {"test_app.py", "test_designed.py"} <= set(chosen.tests)
    assert state.last_test is not None and state.last_test.failed == 0
    assert state.last_test.passed >= 3 + 1


async def test_a_request_naming_a_denied_package_fails_at_its_spec(tmp_path: Path) -> None:
    model = small_tier("never asked")
    roles = {r: model for r in ("planner", "architect", "coder", "fixer", "reviewer")}
    settings = {"packages": {"extra_deny": ["fastapi"]}}
    async with pipeline(tmp_path, roles, profile="small", **settings) as p:
        task_id, state = await run_task(p, SMALL_REQUEST, "sequential", tmp_path / "kv")
        types = [e.type for e in await task_events(p, task_id)]
    assert state.status == "failed"
    assert "'fastapi' is refused (deny)" in (state.failure or "")
    assert "candidate.recorded" not in types
