import json
import threading
import urllib.error
import urllib.request

import pytest
from server import make_server


@pytest.fixture
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_health(base_url):
    status, content_type, body = get(base_url + "/health")
    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body) == {"status": "ok"}


def test_echo(base_url):
    status, _, body = get(base_url + "/echo?msg=hello%20there")
    assert status == 200
    assert json.loads(body) == {"msg": "hello there"}


def test_unknown_path_is_404(base_url):
    status, content_type, body = get(base_url + "/nope")
    assert status == 404
    assert content_type.startswith("application/json")
    assert json.loads(body) == {"error": "not found"}
