"""A tiny JSON web service: /health and /echo."""

import argparse
import json
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            self._send(200, {"status": "ok"})
        elif url.path == "/echo":
            self._send(200, {"msg": parse_qs(url.query).get("msg", [""])[0]})
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, format: str, *args: object) -> None:
        pass


def make_server(host: str, port: int) -> HTTPServer:
    return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    make_server("127.0.0.1", parser.parse_args().port).serve_forever()
