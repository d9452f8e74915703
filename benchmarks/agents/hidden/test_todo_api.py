import json
import threading
import urllib.error
import urllib.request

import pytest
from todo_api import make_server


@pytest.fixture
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    if method == "POST" and data is None:
        data = b""
    request = urllib.request.Request(url, method=method, data=data)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read() or b"null")


def test_add_and_list(base_url):
    assert call(base_url + "/todos") == (200, "application/json", [])
    status, content_type, todo = call(base_url + "/todos", "POST", {"title": "milk"})
    assert (status, todo) == (201, {"id": 1, "title": "milk", "done": False})
    assert content_type.startswith("application/json")
    call(base_url + "/todos", "POST", {"title": "eggs"})
    assert [t["title"] for t in call(base_url + "/todos")[2]] == ["milk", "eggs"]


def test_done(base_url):
    call(base_url + "/todos", "POST", {"title": "milk"})
    status, _, todo = call(base_url + "/todos/1/done", "POST")
    assert (status, todo) == (200, {"id": 1, "title": "milk", "done": True})
    assert call(base_url + "/todos")[2][0]["done"] is True
    assert call(base_url + "/todos/7/done", "POST")[0] == 404


def test_bad_bodies(base_url):
    assert call(base_url + "/todos", "POST", {"name": "x"})[0] == 400
    assert call(base_url + "/todos", "POST", {"title": ""})[0] == 400


def test_other_paths(base_url):
    status, _, body = call(base_url + "/elsewhere")
    assert (status, body) == (404, {"error": "not found"})
