import json
import threading
import urllib.error
import urllib.request

import pytest
from kv_server import make_server


@pytest.fixture
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url, method="GET", body=None):
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def test_put_get(base_url):
    assert call(base_url + "/keys/colour", "PUT", b"green")[0] == 204
    status, content_type, body = call(base_url + "/keys/colour")
    assert (status, body) == (200, b"green")
    assert content_type.startswith("text/plain")
    call(base_url + "/keys/colour", "PUT", b"blue")
    assert call(base_url + "/keys/colour")[2] == b"blue"


def test_missing_and_delete(base_url):
    assert call(base_url + "/keys/none")[0] == 404
    call(base_url + "/keys/a", "PUT", b"1")
    assert call(base_url + "/keys/a", "DELETE")[0] == 204
    assert call(base_url + "/keys/a")[0] == 404
    assert call(base_url + "/keys/a", "DELETE")[0] == 404


def test_list_names(base_url):
    for name in ("b", "a", "c"):
        call(base_url + f"/keys/{name}", "PUT", b"x")
    status, content_type, body = call(base_url + "/keys")
    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body) == ["a", "b", "c"]
