"""Arithmetic over HTTP."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def make_server(host: str, port: int) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path not in ("/add", "/divide"):
                self._send(404, {"error": "not found"})
                return
            query = parse_qs(url.query)
            try:
                a = _number(query["a"][0])
                b = _number(query["b"][0])
            except (KeyError, ValueError):
                self._send(400, {"error": "a and b must be numbers"})
                return
            if url.path == "/add":
                self._send(200, {"result": a + b})
            elif b == 0:
                self._send(400, {"error": "division by zero"})
            else:
                self._send(200, {"result": a / b})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
