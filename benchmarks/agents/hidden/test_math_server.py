import json
import threading
import urllib.error
import urllib.request

import pytest
from math_server import make_server


@pytest.fixture
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


def test_add(base_url):
    status, content_type, body = call(base_url + "/add?a=2&b=3")
    assert (status, body) == (200, {"result": 5})
    assert content_type.startswith("application/json")
    assert call(base_url + "/add?a=1.5&b=2")[2] == {"result": 3.5}
    assert call(base_url + "/add?a=-4&b=1")[2] == {"result": -3}


def test_divide(base_url):
    assert call(base_url + "/divide?a=7&b=2")[:3:2] == (200, {"result": 3.5})
    status, _, body = call(base_url + "/divide?a=1&b=0")
    assert status == 400
    assert "error" in body


def test_bad_parameters(base_url):
    for query in ("/add?a=1", "/add?a=x&b=2", "/divide"):
        status, _, body = call(base_url + query)
        assert status == 400, query
        assert "error" in body


def test_other_paths(base_url):
    assert call(base_url + "/sub?a=1&b=2")[::2] == (404, {"error": "not found"})
