import json
import threading
import urllib.error
import urllib.request

import pytest
from shortener import make_server


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


@pytest.fixture
def serve():
    servers = []

    def start(db_path):
        server = make_server("127.0.0.1", 0, str(db_path))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with OPENER.open(req, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_shorten_and_follow(tmp_path, serve):
    base = serve(tmp_path / "links.json")
    status, _, body = request(base + "/shorten", {"url": "https://example.org/a/page"})
    assert status == 201
    answer = json.loads(body)
    assert answer["url"] == "https://example.org/a/page"
    assert answer["code"].isalnum()
    status, headers, _ = request(f"{base}/{answer['code']}")
    assert status == 302
    assert headers["Location"] == "https://example.org/a/page"


def test_bad_urls_are_refused(tmp_path, serve):
    base = serve(tmp_path / "links.json")
    assert request(base + "/shorten", {"url": "ftp://example.org"})[0] == 400
    assert request(base + "/shorten", {"link": "https://example.org"})[0] == 400


def test_unknown_code(tmp_path, serve):
    base = serve(tmp_path / "links.json")
    assert request(base + "/doesnotexist")[0] == 404


def test_links_survive_a_restart(tmp_path, serve):
    db = tmp_path / "links.json"
    first = serve(db)
    code = json.loads(request(first + "/shorten", {"url": "http://example.org"})[2])["code"]
    second = serve(db)
    status, headers, _ = request(f"{second}/{code}")
    assert status == 302
    assert headers["Location"] == "http://example.org"
