"""Agents through the API and the server's workers: a task goes to an agent whose range
covers its complexity and runs its stages on that agent's models; an agent is busy until
its task ends; a task no agent can take waits, says why, and is assigned once one is
free."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.llm.scripted import prompt_text, scripted_function, scripted_model
from tests.api.conftest import Api, open_api, server_settings
from tests.scripts import todo_project

GATE = threading.Event()
"""The agents' coders answer only once it is set: their tasks stay busy until then."""
CALLS: list[str] = []


def planner() -> Model:
    """The todo plan, with the complexity the request names ("complexity 7: ...")."""

    def plan(messages: list[ModelMessage]) -> dict[str, Any]:
        found = re.search(r"complexity (\d+)", prompt_text(messages))
        return {**todo_project.PLAN, "complexity": int(found[1]) if found else 5}

    return scripted_model([plan], name="planner")


def _gated_coder(name: str) -> Model:
    respond = scripted_function([lambda m: todo_project.code_for(m)])

    async def gated(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        CALLS.append(name)
        await asyncio.to_thread(GATE.wait)
        return respond(messages, info)

    return FunctionModel(gated, model_name=name)


def small_coder() -> Model:
    return _gated_coder("small-coder")


def big_coder() -> Model:
    return _gated_coder("big-coder")


def configured_coder() -> Model:
    return _gated_coder("configured-coder")


HERE = "function:tests.api.test_assignment"


@pytest.fixture
def agents_api(tmp_path: Path) -> Iterator[Api]:
    GATE.clear()
    CALLS.clear()
    models = todo_project.models(planner=planner(), coder=configured_coder())
    try:
        yield from open_api(server_settings(tmp_path), models)
    finally:
        GATE.set()


def status(api: Api, task_id: str, wanted: str, timeout: float = 60) -> dict[str, Any]:
    """The task's view once it is ``wanted`` (``assigned``: it has an agent)."""

    async def wait() -> None:
        for _ in range(int(timeout / 0.05)):
            state = await api.server.runtime.state(task_id)
            if state.status == wanted or (wanted == "assigned" and state.agent):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"task {task_id} never became {wanted}")

    api.call(wait)
    body: dict[str, Any] = api.get(f"/api/tasks/{task_id}").json()
    return body


def submit(api: Api, request: str) -> str:
    answer = api.post("/api/tasks", json={"request": request, "workspace": "repo"})
    assert answer.status_code == 201, answer.text
    task_id: str = answer.json()["id"]
    return task_id


def test_tasks_go_to_covering_agents_wait_while_they_are_busy_and_run_on_their_models(
    agents_api: Api,
) -> None:
    api = agents_api
    for name, lo, hi in (("small", 1, 4), ("big", 5, 8)):
        body = {
            "name": name,
            "models": {"coder": f"{HERE}:{name}_coder"},
            "min_complexity": lo,
            "max_complexity": hi,
            "capacity": 1,
        }
        made = api.post("/api/agents", scope="admin", json=body)
        assert made.status_code == 201, made.text
    assert api.post("/api/agents", scope="write", json=body).status_code == 403
    listed = {a["name"]: a for a in api.get("/api/agents").json()}
    assert set(listed) == {"small", "big"} and listed["small"]["status"] == "available"
    assert listed["small"]["models"]["coder"] == f"{HERE}:small_coder"

    first = submit(api, "complexity 2: a todo CLI")
    assert status(api, first, "assigned")["agent"] == "small"
    second = submit(api, "complexity 3: a todo CLI too")
    waiting = status(api, second, "waiting")
    assert waiting["waiting"] == "every agent that takes complexity 3 is busy: small (1 of 1 tasks)"
    assert waiting["phase"] == "assigner" and waiting["agent"] is None
    hard = submit(api, "complexity 9: a compiler")
    assert status(api, hard, "waiting")["waiting"] == (
        "no agent takes complexity 9: big (5-8), small (1-4)"
    )
    agents = {a["name"]: a for a in api.get("/api/agents").json()}
    assert agents["small"]["status"] == "busy" and agents["small"]["tasks"] == [first]

    GATE.set()  # the small agent's task ends, and the waiting task gets it
    assert api.settle(first)["status"] == "completed"
    done = api.settle(second)
    assert done["status"] == "completed" and done["agent"] == "small"
    # both ran their coder on the agent's model, never on the configured one
    assert CALLS.count("small-coder") == 4 and "configured-coder" not in CALLS
    coders = {u["model"] for u in done["usage"] if u["role"] == "coder"}
    assert coders == {"small-coder"}
    # an agent that covers 9 is registered: the hard task gets it
    body = {"name": "huge", "models": {"coder": f"{HERE}:big_coder"}, "max_complexity": 10}
    assert api.post("/api/agents", scope="admin", json=body).status_code == 201
    assert api.settle(hard)["agent"] == "huge"
    agents = {a["name"]: a for a in api.get("/api/agents").json()}
    assert agents["small"]["status"] == "available" and agents["small"]["last_active"]
    assert api.delete("/api/agents/huge").status_code == 204
    assert api.delete("/api/agents/huge").status_code == 404


def test_an_agent_with_an_unusable_model_is_refused(agents_api: Api) -> None:
    api = agents_api
    for models, field in (
        ({"coder": "nosuchprovider"}, "has no provider"),
        ({"coder": "function:nowhere.at.all:model"}, "cannot be loaded"),
        ({"painter": "test:x"}, "painter"),
    ):
        answer = api.post("/api/agents", scope="admin", json={"name": "x", "models": models})
        assert answer.status_code in (400, 422), answer.text
        assert field in answer.text
    assert api.get("/api/agents").json()[0]["name"] == "default"
