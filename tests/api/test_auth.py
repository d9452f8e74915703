"""Keys and scopes on every route: 401 without a valid key (missing, malformed, unknown,
revoked), 403 below the route's scope, 429 past the rate limit; errors as JSON, and no
key in any answer or event."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import Api, open_api, server_settings

OPEN = {"/api/health", "/api/ready"}
# one sample request per route: (method, path, scope it needs)
ROUTES = [
    ("GET", "/api/me", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/api/tasks", "read"),
    ("POST", "/api/tasks", "write"),
    ("GET", "/api/tasks/x", "read"),
    ("POST", "/api/tasks/x/cancel", "write"),
    ("POST", "/api/tasks/x/resume", "write"),
    ("POST", "/api/tasks/x/answer", "write"),
    ("POST", "/api/tasks/x/approve", "write"),
    ("GET", "/api/tasks/x/files", "read"),
    ("GET", "/api/tasks/x/files/a.py", "read"),
    ("GET", "/api/tasks/x/diff", "read"),
    ("GET", "/api/tasks/x/archive", "read"),
    ("GET", "/api/workspaces", "read"),
    ("POST", "/api/workspaces/w/files", "write"),
    ("GET", "/api/agents", "read"),
    ("POST", "/api/agents", "admin"),
    ("DELETE", "/api/agents/a", "admin"),
    ("GET", "/api/keys", "admin"),
    ("POST", "/api/keys", "admin"),
    ("DELETE", "/api/keys/k", "admin"),
    ("GET", "/api/events", "read"),
    ("GET", "/api/events/stream", "read"),
    ("GET", "/api/changes", "read"),
    ("GET", "/api/usage", "read"),
]
BELOW = {"read": [], "write": ["read"], "admin": ["read", "write"]}


def test_the_table_names_every_route(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    documented = {
        (method.upper(), path) for path, ops in paths.items() for method in ops if path not in OPEN
    }
    named = {
        "{task_id}": "x", "{path}": "a.py", "{key_id}": "k", "{name}": "a",
    }  # fmt: skip

    def sample(method: str, path: str) -> tuple[str, str]:
        for param, value in named.items():
            value = "w" if param == "{name}" and "workspaces" in path else value
            path = path.replace(param, value)
        return method, path

    assert {sample(m, p) for m, p in documented} == {(m, p) for m, p, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_every_route_needs_a_key_of_its_scope(api: Api, method: str, path: str, scope: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        answer = api.client.request(method, path, headers=headers)
        assert answer.status_code == 401, (path, headers, answer.text)
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    for lower in BELOW[scope]:
        answer = api.client.request(method, path, headers=api.headers(lower))
        assert answer.status_code == 403, (path, lower, answer.text)
        assert answer.json() == {
            "error": "forbidden",
            "detail": f"this needs a key with the {scope} scope; this key's scope is {lower}",
        }
    if path.endswith("/stream"):
        return  # it answers with a stream that never ends: see test_stream.py
    answer = api.client.request(method, path, headers=api.headers(scope))
    assert answer.status_code not in (401, 403), (path, answer.text)


def test_health_and_ready_need_no_key(api: Api) -> None:
    assert api.client.get("/api/health").json() == {"status": "ok"}
    assert api.client.get("/api/ready").json() == {"status": "ready"}


def test_keys_are_created_shown_once_listed_and_revoked(api: Api) -> None:
    made = api.post("/api/keys", scope="admin", json={"name": "ci", "scope": "write"})
    assert made.status_code == 201
    new = made.json()
    assert new["key"].startswith("flk_") and new["scope"] == "write"
    mine = {"Authorization": f"Bearer {new['key']}"}
    assert api.client.get("/api/me", headers=mine).json()["name"] == "ci"
    listed = api.get("/api/keys", scope="admin").json()
    assert {k["id"] for k in listed} >= {new["id"]}
    assert all("key" not in k and "digest" not in k for k in listed)
    assert api.delete(f"/api/keys/{new['id']}").status_code == 204
    refused = api.client.get("/api/me", headers=mine)
    assert refused.status_code == 401 and refused.json()["detail"] == "unknown or revoked API key"
    assert api.delete("/api/keys/nosuchkey").status_code == 404
    # the key appears in no event, no answer; its record holds a digest only
    log = api.get("/api/events", params={"limit": 1000}).text
    assert new["key"] not in log and "key.created" not in log
    stored = api.call(api.server.runtime.store.read_all)
    assert all(new["key"] not in e.model_dump_json() for e in stored)
    assert any(e.type == "key.created" for e in stored)


def test_a_key_with_a_wrong_secret_is_refused(api: Api) -> None:
    key = api.keys["admin"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    answer = api.client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401


def test_a_key_past_its_rate_limit_gets_429(tmp_path: Path) -> None:
    for api in open_api(server_settings(tmp_path, rate_limit=5)):
        codes = [api.get("/api/me").status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        limited = api.get("/api/me")
        assert limited.json()["error"] == "too many requests"
        assert int(limited.headers["retry-after"]) >= 1
        assert api.get("/api/me", scope="write").status_code == 200  # per key


def test_cors_is_closed_unless_configured(tmp_path: Path) -> None:
    preflight = {
        "Origin": "https://elsewhere.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    for api in open_api(server_settings(tmp_path / "closed")):
        answer = api.client.options("/api/tasks", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        got = api.client.get(
            "/api/me", headers={**api.headers("read"), "Origin": "https://elsewhere.example"}
        )
        assert "access-control-allow-origin" not in got.headers
    for api in open_api(
        server_settings(tmp_path / "open", cors_origins=["https://elsewhere.example"])
    ):
        answer = api.client.options("/api/tasks", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://elsewhere.example"
