"""The live stream: SSE and WebSocket, both authenticated, both resuming from the
client's position with nothing missed and nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api
from tests.api.live import Live, live_server
from tests.scripts.todo_project import EVENT_CHAIN


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_server(tmp_path) as server:
        yield server


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of an SSE response as they arrive (comments and ``retry`` skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                event = json.loads(fields["data"])
                yield {**event, "sse_id": int(fields["id"]), "sse_event": fields["event"]}
            fields = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def read(live: Live, count: int, **params: Any) -> list[dict[str, Any]]:
    headers = params.pop("headers", {})
    got: list[dict[str, Any]] = []
    with (
        live.client("read") as client,
        client.stream("GET", "/api/events/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse(response):
            got.append(event)
            if len(got) == count or event["type"] == "task.completed":
                break
    return got


def test_sse_resumes_from_the_last_event_with_nothing_missed_or_repeated(live: Live) -> None:
    with live.client() as client:
        start = client.get("/api/tasks").json()["position"]
        task = client.post("/api/tasks", json={"request": "a todo CLI", "workspace": "w"}).json()
    # live from the position of the task list: the task's events as they are recorded
    first = read(live, 6, after=start, task=task["id"])
    assert first[0]["type"] == "task.initiated"
    chain = [e["type"] for e in first if e["stream_id"].startswith("task-")]
    assert chain == EVENT_CHAIN[: len(chain)]
    # reconnect as a browser does, with Last-Event-ID: the rest, from where it stopped
    rest = read(live, 100, task=task["id"], headers={"Last-Event-ID": str(first[-1]["sse_id"])})
    assert rest[-1]["type"] == "task.completed"
    seen = [e for e in first + rest if e["stream_id"].startswith("task-")]
    assert [e["type"] for e in seen] == EVENT_CHAIN
    positions = [e["sse_id"] for e in first + rest]
    assert positions == sorted(set(positions))
    assert all(e["sse_id"] == e["position"] and e["sse_event"] == e["type"] for e in rest)
    # the same events as the paged log, every one of them
    with live.client("read") as client:
        page = client.get("/api/events", params={"task": task["id"], "limit": 1000}).json()
    assert [e["position"] for e in page["events"]] == positions


def test_the_stream_needs_a_key(live: Live) -> None:
    with httpx.Client(base_url=live.url) as client:
        answer = client.get("/api/events/stream")
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_the_websocket_resumes_from_the_position_the_client_gives(api: Api) -> None:
    task = api.post("/api/tasks", json={"request": "a todo CLI", "workspace": "w"}).json()
    api.settle(task["id"])

    def receive(after: int, count: int) -> list[dict[str, Any]]:
        got = []
        with api.client.websocket_connect("/api/events/ws") as socket:
            socket.send_json({"key": api.keys["read"], "after": after, "task": task["id"]})
            while len(got) < count:
                got.append(socket.receive_json())
        return got

    everything = api.get("/api/events", params={"task": task["id"], "limit": 1000}).json()
    total = len(everything["events"])
    first = receive(0, 5)
    rest = receive(first[-1]["position"], total - 5)
    assert [e["position"] for e in first + rest] == [e["position"] for e in everything["events"]]
    assert [e["type"] for e in first + rest if e["stream_id"].startswith("task-")] == EVENT_CHAIN


def test_the_websocket_closes_without_a_valid_key(api: Api) -> None:
    for hello in ({"key": "flk_nope", "after": 0}, {"after": 0}, ["not", "an", "object"]):
        with api.client.websocket_connect("/api/events/ws") as socket:
            socket.send_json(hello)
            closing = socket.receive()
            assert closing["type"] == "websocket.close"
            assert closing["code"] in (4401, 4400), closing
    with api.client.websocket_connect(
        "/api/events/ws", headers={"Authorization": f"Bearer {api.keys['read']}"}
    ) as socket:
        socket.send_json({"after": -3})
        assert socket.receive()["code"] == 4422


def test_positions_past_what_a_store_holds_are_refused_or_mean_the_end(live: Live) -> None:
    # schemathesis found a 500: an integer past 64 bits reached the store
    with live.client("read") as client:
        for path in ("/api/events", "/api/events/stream"):
            too_far = client.get(path, params={"after": 2**63})
            assert too_far.status_code == 422, too_far.text
            assert too_far.json()["fields"][0]["field"] == "after"
        assert client.get("/api/events", params={"after": 2**63 - 1}).json()["events"] == []
        # a browser's Last-Event-ID past the end: the stream answers and waits for more
        headers = {"Last-Event-ID": "9" * 32}
        with client.stream("GET", "/api/events/stream", headers=headers) as response:
            assert response.status_code == 200
            assert next(response.iter_lines()) == "retry: 2000"
