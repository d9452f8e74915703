"""Bad input gets a clear JSON answer and changes nothing: bodies over the limit (413),
malformed JSON and wrong types (422 naming the field), workspaces outside the root,
``..`` and symlinks out, uploads of a disallowed type; never a stack trace."""

from __future__ import annotations

import os
from pathlib import Path

from tests.api.conftest import Api, open_api, server_settings


def recorded(api: Api) -> list[str]:
    return [e.type for e in api.call(api.server.runtime.store.read_all) if e.type != "key.created"]


def test_a_body_over_the_limit_is_413_and_nothing_is_recorded(tmp_path: Path) -> None:
    for api in open_api(server_settings(tmp_path, max_body_bytes=2048)):
        big = {"request": "x" * 5000, "workspace": "w"}
        answer = api.post("/api/tasks", json=big)
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "too large",
            "detail": "the request body is larger than 2048 bytes",
        }
        # no Content-Length: counted as it arrives
        chunks = (b'{"request": "' + b"x" * 1000 + b'"' for _ in range(4))
        streamed = api.client.post(
            "/api/tasks",
            content=chunks,
            headers={"Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert recorded(api) == []
        assert not (tmp_path / "root" / "w").exists()


def test_malformed_input_is_422_naming_the_field(api: Api) -> None:
    answer = api.post(
        "/api/tasks",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422 and answer.json()["error"] == "invalid input"
    # bytes that are not UTF-8 (schemathesis found FastAPI's undocumented 400 here)
    for path in ("/api/tasks", "/api/keys"):
        undecodable = api.post(
            path, "admin", content=b"\xcb\xbd\xff,Jt", headers={"Content-Type": "application/json"}
        )
        assert undecodable.status_code == 422, undecodable.text
        assert undecodable.json()["fields"] == [
            {"field": "body", "message": "cannot be parsed: not UTF-8 JSON, or a broken form"}
        ]
    wrong = api.post("/api/tasks", json={"request": "r", "workspace": "w", "max_fix_rounds": "x"})
    assert wrong.status_code == 422
    assert [f["field"] for f in wrong.json()["fields"]] == ["max_fix_rounds"]
    missing = api.post("/api/tasks", json={"workspace": "w"})
    assert [f["field"] for f in missing.json()["fields"]] == ["request"]
    blank = api.post("/api/tasks", json={"request": "   ", "workspace": "w"})
    assert blank.status_code == 422 and blank.json()["fields"][0]["field"] == "request"
    extra = api.post("/api/tasks", json={"request": "r", "workspace": "w", "rm": "-rf"})
    assert extra.status_code == 422 and extra.json()["fields"][0]["field"] == "rm"
    budget = api.post("/api/tasks", json={"request": "r", "workspace": "w", "budget": {"usd": -1}})
    assert budget.json()["fields"][0]["field"] == "budget.usd"
    assert recorded(api) == []


def test_workspaces_outside_the_root_are_refused_and_nothing_is_written(
    api: Api, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "escape").symlink_to(outside)
    workspaces = ("../outside", str(outside), "escape", "a/../../outside", ".forgeline")
    # "~name" of no user was a 500 (found by schemathesis)
    for workspace in (*workspaces, "~no-such-user-here/todo", "~? vANdpW"):
        answer = api.post("/api/tasks", json={"request": "build it", "workspace": workspace})
        assert answer.status_code == 400, (workspace, answer.text)
        body = answer.json()
        assert body["error"] == "bad request" and "Traceback" not in body["detail"]
    nul = api.post("/api/tasks", json={"request": "build it", "workspace": "a\x00b"})
    assert nul.status_code == 422 and nul.json()["fields"][0]["field"] == "workspace"
    assert list(outside.iterdir()) == []
    assert recorded(api) == []


def test_unknown_tasks_are_404(api: Api) -> None:
    for path in ("/api/tasks/nosuch", "/api/tasks/nosuch/diff", "/api/tasks/nosuch/files"):
        answer = api.get(path)
        assert answer.status_code == 404 and answer.json()["error"] == "not found"
    assert api.post("/api/tasks/nosuch/answer", json={"answer": "a"}).status_code == 404
    assert api.get("/api/nothing-here").json()["error"] == "not found"


def test_uploads_are_checked_whole_before_anything_is_written(api: Api, tmp_path: Path) -> None:
    repo = tmp_path / "root" / "up"

    def upload(*files: tuple[str, bytes]) -> object:
        parts = [("files", (name, data, "text/plain")) for name, data in files]
        return api.post("/api/workspaces/up/files", files=parts)

    ok = ("app.py", b"print('hi')\n")
    for bad, status in (
        (("tool.exe", b"MZ"), 415),
        (("data.py", b"\x00\x01binary"), 415),
        (("latin.txt", "caf\xe9".encode("latin-1")), 415),
        (("../evil.py", b"x = 1\n"), 400),
        (("/etc/evil.py", b"x = 1\n"), 400),
        ((".git/hooks/pre-commit.py", b"x = 1\n"), 400),
    ):
        answer = upload(ok, bad)
        assert answer.status_code == status, (bad[0], answer.text)  # type: ignore[attr-defined]
        assert not (repo / "app.py").exists()
    assert not (tmp_path / "evil.py").exists() and recorded(api) == []
    done = upload(ok, ("pkg/util.py", b"X = 2\n"))
    assert done.status_code == 201, done.text  # type: ignore[attr-defined]
    assert done.json()["files"] == ["app.py", "pkg/util.py"]  # type: ignore[attr-defined]
    assert (repo / "pkg" / "util.py").read_text() == "X = 2\n"
    # committed: the next task on the repository starts with them
    task = api.post("/api/tasks", json={"request": "a todo CLI", "workspace": "up"}).json()
    files = {f["path"] for f in api.get(f"/api/tasks/{task['id']}/files").json()}
    assert {"app.py", "pkg/util.py"} <= files
    # a symlink in the repository that leads out is not followed by an upload
    os.symlink(tmp_path, repo / "out")
    assert upload(("out/evil.py", b"x = 1\n")).status_code == 400  # type: ignore[attr-defined]
    assert not (tmp_path / "evil.py").exists()
    api.settle(task["id"])


def test_a_task_file_outside_the_worktree_is_refused(api: Api, tmp_path: Path) -> None:
    task = api.post("/api/tasks", json={"request": "a todo CLI", "workspace": "t"}).json()
    api.settle(task["id"])
    (tmp_path / "secret.txt").write_text("no")
    for path in ("../../../../secret.txt", ".git/config", "%2e%2e/%2e%2e/secret.txt"):
        answer = api.get(f"/api/tasks/{task['id']}/files/{path}")
        assert answer.status_code in (400, 404), (path, answer.text)
        assert answer.json().get("text") != "no"
