import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from weather import WeatherError, fetch_forecast, summary

FORECASTS = {
    "Paris": {"city": "Paris", "temp_c": 21.5, "sky": "sunny"},
    "New York": {"city": "New York", "temp_c": -3, "sky": "snow"},
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        city = parse_qs(url.query).get("city", [""])[0]
        if url.path != "/forecast":
            self.answer(404, b'{"error": "not found"}')
        elif city == "Broken":
            self.answer(200, b"this is not json")
        elif city in FORECASTS:
            self.answer(200, json.dumps(FORECASTS[city]).encode())
        else:
            self.answer(404, b'{"error": "unknown city"}')

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_returns_the_json(base_url):
    assert fetch_forecast(base_url, "Paris") == FORECASTS["Paris"]


def test_the_city_is_sent_as_a_query_parameter(base_url):
    assert fetch_forecast(base_url, "New York")["temp_c"] == -3


def test_summary(base_url):
    assert summary(base_url, "Paris") == "Paris: 21.5 C, sunny"


def test_an_error_status_raises(base_url):
    with pytest.raises(WeatherError):
        fetch_forecast(base_url, "Atlantis")


def test_a_body_that_is_not_json_raises(base_url):
    with pytest.raises(WeatherError):
        fetch_forecast(base_url, "Broken")


def test_a_connection_error_raises():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WeatherError):
        fetch_forecast(f"http://127.0.0.1:{port}", "Paris")


def test_weather_error_is_an_exception():
    assert issubclass(WeatherError, Exception)
