"""Tasks through the API: submitted, run by the server's own workers on scripted models,
shown with their plan, agent, tests, review, usage and commits; acted on."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.scripts.todo_project import EVENT_CHAIN

REQUEST = "a todo CLI that stores items in todo.json"


def test_a_submitted_task_runs_to_completion_on_the_servers_workers(api: Api) -> None:
    answer = api.post("/api/tasks", json={"request": REQUEST, "workspace": "todo"})
    assert answer.status_code == 201, answer.text
    task = answer.json()
    assert task["status"] == "running" and task["repository"] == "todo"
    done = api.settle(task["id"])
    assert done["status"] == "completed", done["failure"]
    assert done["agent"] == "default" and done["complexity"] == 5
    assert [i["status"] for i in done["plan"]["items"]] == ["completed", "completed"]
    assert done["tests"]["passed"] == 2 and done["tests"]["ok"]
    assert done["review"]["approved"] is True
    assert {u["role"] for u in done["usage"]} >= {"planner", "architect", "coder", "reviewer"}
    assert any("todo.py" in c["subject"] or "plan" in c["subject"] for c in done["commits"])
    events = api.get("/api/events", params={"task": task["id"], "limit": 1000}).json()["events"]
    assert [e["type"] for e in events if e["stream_id"].startswith("task-")] == EVENT_CHAIN
    listed = api.get("/api/tasks", params={"status": "completed"}).json()
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    assert api.get("/api/tasks", params={"workspace": "other"}).json()["tasks"] == []
    diff = api.get(f"/api/tasks/{task['id']}/diff").json()["diff"]
    assert "+def add(text: str" in diff
    files = {f["path"] for f in api.get(f"/api/tasks/{task['id']}/files").json()}
    assert {"todo.py", "test_todo.py", "plan.yaml"} <= files
    body = api.get(f"/api/tasks/{task['id']}/files/todo.py").json()
    assert body["text"].startswith('"""A todo list') and not body["truncated"]
    archive = api.get(f"/api/tasks/{task['id']}/archive")
    assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"
    # a finished task cannot be cancelled or resumed
    refused = api.post(f"/api/tasks/{task['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert api.post(f"/api/tasks/{task['id']}/resume").status_code == 409
