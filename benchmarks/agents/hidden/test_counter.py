import json
import threading
import urllib.error
import urllib.request

import pytest
from counter_server import make_server


@pytest.fixture
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url, method="GET"):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


def test_increment_and_read(base_url):
    assert call(base_url + "/counters/hits", "POST") == (
        200,
        "application/json",
        {"name": "hits", "value": 1},
    )
    assert call(base_url + "/counters/hits", "POST")[2] == {"name": "hits", "value": 2}
    status, content_type, body = call(base_url + "/counters/hits")
    assert status == 200
    assert content_type.startswith("application/json")
    assert body == {"name": "hits", "value": 2}


def test_unknown_counter_is_zero(base_url):
    assert call(base_url + "/counters/none")[2] == {"name": "none", "value": 0}


def test_all_counters(base_url):
    call(base_url + "/counters/a", "POST")
    call(base_url + "/counters/b", "POST")
    call(base_url + "/counters/b", "POST")
    assert call(base_url + "/counters")[2] == {"a": 1, "b": 2}


def test_other_paths_are_404(base_url):
    status, _, body = call(base_url + "/elsewhere")
    assert status == 404
    assert body == {"error": "not found"}
